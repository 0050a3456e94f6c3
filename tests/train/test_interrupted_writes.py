"""A kill at any point of a checkpoint write never restarts a run or duplicates its loss curve.

States an interrupted swap leaves are simulated on disk (every point: test_checkpoint.py) and
made by a real SIGKILL inside ``save_checkpoint`` (``SMAUG_CKPT_HOOK``); the rerun of the same
command must resume from the newest complete checkpoint, clean up, and log each step once.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys

import pytest

from pipeline.config import REPO_ROOT
from tests.train.conftest import run_overrides, sigusr1_at
from train import pretrain
from train.checkpoint import read_state
from train.trainer import EXIT_INTERRUPTED, Trainer

ARGS = ["--no-progress", "pretrain.steps=5"]


def loss_file(base):
    return base / "results" / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"


def loss_steps(base):
    with loss_file(base).open() as f:
        return [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")]


def rerun(base, params_file, shards, caplog, *extra):
    caplog.clear()
    with caplog.at_level("INFO", logger="train.pretrain"):
        code = pretrain.main(["--params", str(params_file), *ARGS[:1],
                              *run_overrides(base, shards, *ARGS[1:], *extra)])
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resumed")]
    return code, resumed


@pytest.fixture(scope="module")
def stopped_at_2(tmp_path_factory, params_file, pretrain_shards):
    """A 5-step run stopped (SIGUSR1) with its checkpoint at step 2, logged up to step 2."""
    base = tmp_path_factory.mktemp("stopped")
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)  # DVCLive must not see the real repository
        mp.setattr(Trainer, "train_step", sigusr1_at(1))
        code = pretrain.main(["--params", str(params_file), *ARGS[:1],
                              *run_overrides(base, pretrain_shards, *ARGS[1:])])
    assert os.getcwd() == cwd and code == EXIT_INTERRUPTED
    return base


def copy_run(src, dst):
    for part in ("models", "results"):
        shutil.copytree(src / part, dst / part)


def test_kill_between_the_two_renames_resumes_instead_of_restarting(
        tmp_path, stopped_at_2, params_file, pretrain_shards, caplog):
    copy_run(stopped_at_2, tmp_path)
    models = tmp_path / "models"
    # save_checkpoint had moved the old folder aside and not yet renamed the new one in.
    (models / "smaug").rename(models / ".smaug.old-999999")
    shutil.copytree(models / ".smaug.old-999999", models / ".smaug.tmp-999999")
    code, resumed = rerun(tmp_path, params_file, pretrain_shards, caplog)
    assert code == 0
    assert resumed and "at step 2" in resumed[0]
    assert sorted(p.name for p in models.iterdir()) == ["smaug"]  # leftovers gone
    assert read_state(models / "smaug")["step"] == 5
    assert loss_steps(tmp_path) == [1, 2, 3, 4, 5]


def test_step_logged_after_the_last_checkpoint_is_not_logged_twice(
        tmp_path, stopped_at_2, params_file, pretrain_shards, caplog):
    copy_run(stopped_at_2, tmp_path)
    # kill -9 after step 3 was logged, before its checkpoint: the rerun redoes step 3.
    with loss_file(tmp_path).open() as f:
        header = f.readline().strip().split("\t")
    row = {"step": "3", "loss": "99.0", "timestamp": "1"}
    with loss_file(tmp_path).open("a") as f:
        f.write("\t".join(row[c] for c in header) + "\n")
    code, resumed = rerun(tmp_path, params_file, pretrain_shards, caplog)
    assert code == 0 and "at step 2" in resumed[0]
    assert loss_steps(tmp_path) == [1, 2, 3, 4, 5]
    assert "99.0" not in loss_file(tmp_path).read_text()


@pytest.mark.parametrize("point, resumed_at", [("partial", 2), ("aside", 4)])
def test_real_sigkill_inside_a_checkpoint_write(tmp_path, params_file, pretrain_shards, caplog, point,
                                                resumed_at):
    """SIGKILL while step 4's checkpoint replaces step 2's: half-written, or between the renames."""
    run = run_overrides(tmp_path, pretrain_shards, *ARGS[1:], "pretrain.ckpt_every=2")
    proc = subprocess.run(
        [sys.executable, "-m", "train.pretrain", "--params", str(params_file), *ARGS[:1], *run],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SMAUG_CKPT_HOOK": f"{point}:kill"},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert [p.name.split("-")[0] for p in sorted((tmp_path / "models").iterdir()) if p.name.startswith(".")]
    assert loss_steps(tmp_path) == [1, 2, 3, 4]
    code, resumed = rerun(tmp_path, params_file, pretrain_shards, caplog, "pretrain.ckpt_every=2")
    assert code == 0 and f"at step {resumed_at}" in resumed[0]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["smaug"]
    assert read_state(tmp_path / "models" / "smaug")["step"] == 5
    assert loss_steps(tmp_path) == [1, 2, 3, 4, 5]
