"""SIGTERM / SIGUSR1: checkpoint, clean exit with EXIT_INTERRUPTED, and a resume that continues
the same loss curve through the real program (loader position, RNG, DVCLive)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pipeline.config import REPO_ROOT
from train import pretrain
from train.checkpoint import load_training_state, read_state
from train.trainer import EXIT_INTERRUPTED, Trainer


def loss_rows(results):
    path = results / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    if not path.exists():
        return []
    with path.open() as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f, delimiter="\t")]


def test_sigterm_writes_checkpoint_and_exits_75(tmp_path, params_file, overrides):
    cmd = [sys.executable, "-m", "train.pretrain", "--params", str(params_file), "--no-progress",
           *overrides("pretrain.steps=500")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while len(loss_rows(tmp_path / "results")) < 2:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() < deadline, "no training step logged in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "stopped by SIGTERM" in out
    state = read_state(tmp_path / "models" / "smaug")
    assert state["interrupted"] is True and state["finished"] is False
    assert 2 <= state["step"] < 500
    training = load_training_state(tmp_path / "models" / "smaug")
    assert training["step"] == state["step"]
    assert training["extra"]["data"]["batch"] == state["step"]  # one batch per step, epoch 0 or later
    assert len(loss_rows(tmp_path / "results")) == state["step"]


def test_interrupt_then_rerun_continues_same_curve(tmp_path, params_file, overrides, monkeypatch):
    steps = 5
    args = ["--params", str(params_file), "--no-progress"]
    straight = tmp_path / "straight"
    assert pretrain.main(args + overrides(
        f"pretrain.steps={steps}",
        f"pretrain.out_dir={straight / 'models'}", f"pretrain.results_dir={straight / 'results'}")) == 0
    expected = loss_rows(straight / "results")
    assert [s for s, _ in expected] == list(range(1, steps + 1))

    # The same run, sent SIGUSR1 (a real signal to this process) during its second step.
    original = Trainer.train_step

    def train_step_with_signal(self, micro):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    resumed = tmp_path / "resumed"
    run = overrides(f"pretrain.steps={steps}",
                    f"pretrain.out_dir={resumed / 'models'}",
                    f"pretrain.results_dir={resumed / 'results'}")
    monkeypatch.setattr(Trainer, "train_step", train_step_with_signal)
    assert pretrain.main(args + run) == EXIT_INTERRUPTED
    assert read_state(resumed / "models" / "smaug")["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", original)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handlers are given back
    torch.manual_seed(4321)  # what happens between the runs must not matter
    assert pretrain.main(args + run) == 0
    got = loss_rows(resumed / "results")
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-6, rel=0)
    assert read_state(resumed / "models" / "smaug")["finished"] is True
