"""A DVC stage in slurm mode: `dvc repro` submits the array, waits, and records real outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import REPO_ROOT

pytestmark = pytest.mark.slurm


def test_dvc_repro_in_slurm_mode_waits_for_the_jobs(slurm_cluster, dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = lambda *a: subprocess.run(list(a), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run("dvc", "init", "--no-scm", "-q").returncode == 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "preprocess": {"cache_dir": None},
        "launch": {"mode": "slurm", "log_dir": str(tmp_path / "logs"),
                   "slurm": {"cpus_per_task": 1, "poll_s": 1, "shards_per_task": 5}},
    }))
    cmd = (f"{sys.executable} -m pipeline.launch.preprocess --params params.yaml --no-progress "
           f"--annotations {dataset.root / 'webvid.csv'} --videos {dataset.root / 'videos'} "
           f"--out shards --shard-size {dataset.shard_size}")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"shard": {
        "cmd": cmd, "deps": [str(dataset.root / "webvid.csv")], "params": ["preprocess"], "outs": ["shards"]}}}))
    repro = run("dvc", "repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "array job" in repro.stdout + repro.stderr  # it really went through SLURM
    assert (tmp_path / "shards" / "stats.parquet").exists() and (tmp_path / "dvc.lock").exists()
    summary = json.loads((tmp_path / "shards" / "stats_summary.json").read_text())
    assert summary["ok"] == dataset.clips and summary["failed"] == 1
    status = run("dvc", "status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
