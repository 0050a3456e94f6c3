"""``train.pretrain.main`` under torch.distributed: two gloo ranks from the standard env vars
(what torchrun and submitit's TorchDistributedEnvironment().export() set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.config import REPO_ROOT
from tests.support import free_port
from train.checkpoint import load_model, read_state
from train.distributed import init_distributed


def test_main_on_two_gloo_ranks(tmp_path, params_file, overrides):
    port = free_port()
    cmd = [sys.executable, "-m", "train.pretrain", "--params", str(params_file), "--no-progress",
           "--device", "cpu", *overrides("pretrain.steps=2")]
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    state = read_state(tmp_path / "models" / "smaug")
    assert state["step"] == 2 and state["finished"] is True
    load_model(tmp_path / "models" / "smaug")
    cost = json.loads((tmp_path / "results" / "metrics" / "pretrain-smaug.json").read_text())
    assert cost["world_size"] == 2 and cost["clips_per_step"] == 8  # 4 clips per rank
    assert not list((tmp_path / "models").glob(".*"))  # only rank 0 wrote, no temp folders


def test_bad_env_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(RuntimeError, match="WORLD_SIZE='two'"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        init_distributed("cpu")
