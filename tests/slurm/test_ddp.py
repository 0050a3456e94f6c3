"""Pre-training as a 2-rank DDP job on the real local SLURM: requeue with resume, same losses.

One job does both checks: it is stopped by the signal SLURM sends before a time limit (USR2,
here sent early with ``scancel --signal``), checkpoints, requeues itself and resumes; its loss
curve must still equal, step for step, the single-process run with the same global batch
(2 accumulated micro-batches of the same size).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline.config import section
from pipeline.launch.config import LaunchConfig
from pipeline.launch.distributed import submit
from pipeline.launch.slurm import wait

STEPS = 12


def losses(results: Path) -> dict[int, float]:
    tsv = results / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    if not tsv.exists():
        return {}
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    return {int(step): float(loss) for step, loss, *_ in rows}


def squeue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True,
                          text=True).stdout.strip()


def train_args(params_file: Path, tiny: list[str], shards: Path, out: Path, *extra: str) -> list[str]:
    return ["--params", str(params_file), "--no-progress", *tiny, f"pretrain.steps={STEPS}",
            f"pretrain.shards={shards}", f"pretrain.out_dir={out / 'models'}",
            f"pretrain.results_dir={out / 'results'}", *extra]


@pytest.mark.slurm
@pytest.mark.slow
def test_ddp_job_requeues_resumes_and_matches_one_process(slurm_cluster, slurm_shards, params_file,
                                                         tiny_overrides, tmp_path, monkeypatch):
    from train.pretrain import main as pretrain_main

    shards, _, code = slurm_shards
    assert code == 0
    # DVCLive looks for a git repository from the working directory; keep it out of ours.
    monkeypatch.chdir(tmp_path)

    # The reference: one process, 2 micro-batches of 2 clips per step.
    single = tmp_path / "single"
    assert pretrain_main(train_args(params_file, tiny_overrides, shards, single, "pretrain.accum=2")) == 0
    expected = losses(single / "results")
    assert sorted(expected) == list(range(1, STEPS + 1))

    # The same global batch as 2 ranks x 1 micro-batch of 2 clips, as a SLURM job.
    ddp = tmp_path / "ddp"
    cfg = section({"launch": {"mode": "slurm", "log_dir": str(tmp_path / "logs"), "slurm": {
        "tasks_per_node": 2, "cpus_per_task": 1, "poll_s": 1, "timeout_min": 10, "signal_delay_s": 60}}},
        LaunchConfig, "launch")
    job = submit(cfg, "train.pretrain", train_args(params_file, tiny_overrides, shards, ddp,
                                                   "pretrain.accum=1", "--fresh"), "pretrain")
    box = {}
    waiter = threading.Thread(target=lambda: box.setdefault("outcome", wait([job], poll_s=1)[0]))
    waiter.start()

    # Once a step is logged, send what SLURM sends signal_delay_s before the limit.
    deadline = time.monotonic() + 240
    while not losses(ddp / "results") and waiter.is_alive() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert waiter.is_alive(), f"job ended before it could be interrupted: {box}"
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    # A requeued job waits ~2 minutes (BeginTime) before it may start again; let it start now.
    deadline = time.monotonic() + 120
    while "BeginTime" not in squeue_state(job.job_id) and waiter.is_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "BeginTime" in squeue_state(job.job_id), f"job not requeued: {squeue_state(job.job_id)}"
    subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], check=True)
    waiter.join(timeout=400)
    outcome = box["outcome"]
    assert outcome.ok, f"{outcome.state}: {outcome.error}"
    assert [r["rank"] for r in outcome.result] == [0, 1]
    assert all(r["world_size"] == 2 and r["restarts"] == 1 for r in outcome.result)

    log = Path(outcome.log).read_text()
    assert "stopped by SIGUSR2" in log and "resumed" in log  # what SLURM sends before the limit
    got = losses(ddp / "results")
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in expected:
        assert abs(got[step] - expected[step]) <= 1e-4 * max(1.0, abs(expected[step])), (
            step, got[step], expected[step])
