"""Per-shard work as a SLURM job array: one array task per group of shards.

The work function must be idempotent per item (preprocessing skips finished shards), so a task
that failed, or a whole stage that is run again, only redoes what is missing. After the array
has ended, each failed task is resubmitted alone (``launch.slurm.retries`` times); what still
fails is reported with its error and log file, and the stage exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pipeline.launch.config import LaunchConfig
from pipeline.launch.slurm import Outcome, executor, wait


def group_items(items: Sequence[Any], per_group: int) -> list[list[Any]]:
    """``[0..9]`` with 4 per group -> ``[[0,1,2,3], [4,5,6,7], [8,9]]`` (order kept)."""
    if per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    items = list(items)
    return [items[i:i + per_group] for i in range(0, len(items), per_group)]


@dataclass
class ArrayReport:
    groups: list[list[Any]]
    outcomes: list[Outcome]  # the last attempt of each group
    attempts: list[int] = field(default_factory=list)  # submissions per group (1 = no retry)
    job_ids: list[list[str]] = field(default_factory=list)  # every job id tried, per group

    @property
    def failed(self) -> list[int]:
        return [i for i, o in enumerate(self.outcomes) if not o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.groups) - len(self.failed)}/{len(self.groups)} array tasks succeeded"
                 + (f" ({sum(a > 1 for a in self.attempts)} after a retry)" if any(a > 1 for a in self.attempts) else "")]
        for i in self.failed:
            o = self.outcomes[i]
            lines.append(f"FAILED items {self.groups[i]} (jobs {', '.join(self.job_ids[i])}, state {o.state}); "
                         f"log {o.log}\n    " + o.error.replace("\n", "\n    "))
        return "\n".join(lines)


def run_array(fn: Callable[[list[Any]], Any], items: Sequence[Any], cfg: LaunchConfig, name: str,
              *, per_task: int | None = None) -> ArrayReport:
    """Run ``fn(group)`` for every group of ``items`` as one SLURM array; wait; retry failures alone."""
    s = cfg.slurm
    groups = group_items(items, per_task or s.shards_per_task)
    if not groups:
        return ArrayReport(groups=[], outcomes=[])
    ex = executor(cfg, name)
    jobs = ex.map_array(fn, groups)
    print(f"[launch] {name}: array job {jobs[0].job_id.split('_')[0]} with {len(jobs)} tasks "
          f"(squeue -j {jobs[0].job_id.split('_')[0]}; logs {cfg.log_path() / name})", flush=True)
    outcomes = wait(jobs, poll_s=s.poll_s, desc=f"{name} array")
    attempts = [1] * len(groups)
    job_ids = [[j.job_id] for j in jobs]
    for _ in range(s.retries):
        failed = [i for i, o in enumerate(outcomes) if not o.ok]
        if not failed:
            break
        print(f"[launch] {name}: {len(failed)} task(s) failed; resubmitting each alone", flush=True)
        retry = [ex.submit(fn, groups[i]) for i in failed]
        for i, job in zip(failed, retry):
            attempts[i] += 1
            job_ids[i].append(job.job_id)
        for i, outcome in zip(failed, wait(retry, poll_s=s.poll_s, desc=f"{name} retries")):
            outcomes[i] = outcome
    return ArrayReport(groups=groups, outcomes=outcomes, attempts=attempts, job_ids=job_ids)
