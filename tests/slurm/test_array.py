"""run_array on the real local SLURM: retries alone, failures reported, killed tasks not waited on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from pipeline.config import section
from pipeline.launch.array import group_items, run_array
from pipeline.launch.config import LaunchConfig

# The job unpickles these functions; this test module is not importable there, so ship it by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slurm


def launch_cfg(tmp: Path, **slurm) -> LaunchConfig:
    base = {"cpus_per_task": 1, "poll_s": 1, "timeout_min": 5, "signal_delay_s": 30}
    return section({"launch": {"mode": "slurm", "log_dir": str(tmp / "logs"), "slurm": {**base, **slurm}}},
                   LaunchConfig, "launch")


class FailOnce:
    """Squares its items; the group holding ``bad`` fails on its first attempt only."""

    def __init__(self, marker: Path, bad: int) -> None:
        self.marker, self.bad = str(marker), bad

    def __call__(self, group):
        if self.bad in group and not Path(self.marker).exists():
            Path(self.marker).write_text("failed once")
            raise ValueError(f"transient failure on {self.bad}")
        return [x * x for x in group]


class BadAndSlow:
    """Item 1 always raises; item 2 announces itself and sleeps until it is cancelled."""

    def __init__(self, started: Path) -> None:
        self.started = str(started)

    def __call__(self, group):
        if 1 in group:
            raise ValueError("item 1 is broken")
        if 2 in group:
            Path(self.started).write_text("running")
            time.sleep(600)
        return group


def test_group_items_keeps_order_and_rejects_zero():
    assert group_items(range(5), 2) == [[0, 1], [2, 3], [4]]
    assert group_items([], 3) == []
    with pytest.raises(ValueError, match="per_group"):
        group_items([1], 0)


def test_failed_task_is_rerun_alone(slurm_cluster, tmp_path):
    report = run_array(FailOnce(tmp_path / "marker", bad=3), list(range(6)), launch_cfg(tmp_path, retries=1),
                       "failonce", per_task=2)
    assert report.ok, report.summary()
    assert report.groups == [[0, 1], [2, 3], [4, 5]]
    assert [o.result for o in report.outcomes] == [[[0, 1]], [[4, 9]], [[16, 25]]]
    assert report.attempts == [1, 2, 1]
    array_id = report.job_ids[0][0].split("_")[0]
    assert [ids[0] for ids in report.job_ids] == [f"{array_id}_{i}" for i in range(3)]
    retry_id = report.job_ids[1][1]
    assert "_" not in retry_id and retry_id != array_id  # a job of its own, only for that group
    assert "1 after a retry" in report.summary()


def test_failures_are_reported_and_killed_tasks_not_waited_for(slurm_cluster, tmp_path):
    started = tmp_path / "started"

    def cancel_the_sleeper():
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        ids = subprocess.run(["squeue", "-h", "-r", "-n", "smaug-badslow", "-o", "%i"],
                             capture_output=True, text=True).stdout.split()
        subprocess.run(["scancel", *[i for i in ids if i.endswith("_2")]], check=False)

    killer = threading.Thread(target=cancel_the_sleeper, daemon=True)
    killer.start()
    t0 = time.monotonic()
    report = run_array(BadAndSlow(started), [0, 1, 2], launch_cfg(tmp_path, retries=0), "badslow")
    killer.join(timeout=5)
    assert time.monotonic() - t0 < 300, "waited on a cancelled task"
    assert not report.ok and report.failed == [1, 2]
    assert report.outcomes[0].ok and report.outcomes[0].result == [[0]]
    broken, killed = report.outcomes[1], report.outcomes[2]
    assert "item 1 is broken" in broken.error and Path(broken.log).exists()
    assert killed.state.startswith("CANCELLED") and "without a result" in killed.error
    text = report.summary()
    assert "1/3 array tasks succeeded" in text and text.count("FAILED items") == 2
