"""Submitting to SLURM through submitit, and waiting for the jobs like a foreground command.

A DVC stage in ``slurm`` mode must behave like a local command: submit, wait until every job
is over, then exit with a status that says whether everything worked. :func:`wait` does that
waiting. It reads each job's result pickle (what submitit writes when the function returns or
raises) and asks SLURM for the job state, so a job that died without a result (killed at the
time limit, cancelled, out of memory, node failure) is reported as failed instead of being
waited on forever. Job states come from ``squeue`` (every cluster has it; finished jobs stay
listed for ``MinJobAge``) and, for jobs squeue has forgotten, ``sacct`` (needs accounting).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from tqdm import tqdm

from pipeline.config import REPO_ROOT
from pipeline.launch.config import LaunchConfig

# States in which a job may still produce its result (REQUEUED/PENDING: waiting to restart).
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED"}
# A finished job whose result pickle is still missing gets this long (shared file systems lag).
RESULT_GRACE_S = 15.0  # as submitit waits for a result file once SLURM says the job is over


class SlurmUnavailable(RuntimeError):
    """``launch.mode: slurm`` was asked for on a machine without SLURM clients."""


def require_slurm() -> None:
    import shutil

    missing = [b for b in ("sbatch", "srun", "squeue", "scontrol") if not shutil.which(b)]
    if missing:
        raise SlurmUnavailable(
            f"launch.mode is slurm but {', '.join(missing)} not found on PATH; run on a SLURM login "
            "node, or start the one-node test cluster: python tests/slurm/local_slurm.py start"
        )


def executor(cfg: LaunchConfig, name: str, *, nodes: int = 1, tasks_per_node: int = 1,
             gpus_per_node: int = 0, cpus_per_task: int | None = None):
    """A submitit SlurmExecutor writing into ``<launch.log_dir>/<name>/``.

    Jobs run the same interpreter as this process (``sys.executable``) in the directory the
    job was submitted from (SLURM's default), with the repository root on ``PYTHONPATH`` so
    ``import preprocess`` / ``import train`` resolve as they do here.
    """
    import submitit

    require_slurm()
    s = cfg.slurm
    folder = cfg.log_path() / name / "%j"
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=s.max_num_timeout,
                                python=shlex.quote(sys.executable))
    params: dict[str, Any] = dict(
        job_name=f"smaug-{name}", time=s.timeout_min, nodes=nodes, ntasks_per_node=tasks_per_node,
        cpus_per_task=cpus_per_task or s.cpus_per_task, signal_delay_s=s.signal_delay_s,
        array_parallelism=s.array_parallelism, stderr_to_stdout=False,
        setup=[f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}", *s.setup],
        additional_parameters=dict(s.additional_parameters),
    )
    if s.partition:
        params["partition"] = s.partition
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if s.mem_gb is not None:
        mem = s.mem_gb
        params["mem"] = f"{int(mem)}GB" if mem == int(mem) else f"{int(mem * 1024)}MB"
    ex.update_parameters(**params)
    return ex


# --------------------------------------------------------------------------- job states


def _run(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def slurm_states(job_ids: Sequence[str]) -> dict[str, str]:
    """``{job_id: STATE}`` for jobs (``123`` or array tasks ``123_4``) SLURM still knows."""
    if not job_ids:
        return {}
    bases = sorted({j.split("_")[0] for j in job_ids})
    states: dict[str, str] = {}
    out = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(bases)])
    for line in (out or "").splitlines():
        jid, _, state = line.strip().partition("|")
        if jid:
            states[jid] = state.strip()
    forgotten = [j for j in job_ids if j not in states]
    if forgotten:
        out = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j",
                    ",".join(sorted({j.split("_")[0] for j in forgotten}))])
        for line in (out or "").splitlines():
            jid, _, state = line.strip().partition("|")
            if jid and "." not in jid:
                states.setdefault(jid, state.split()[0] if state else "UNKNOWN")
    return states


# --------------------------------------------------------------------------- waiting


@dataclass
class Outcome:
    """What became of one submitted job (one array task, or one multi-task job)."""

    job_id: str
    ok: bool
    result: Any = None  # the function's return value, one per task: [rank0, rank1, ...]
    error: str = ""  # the job's traceback tail, or why SLURM ended it
    state: str = ""  # the SLURM state when the job was seen last
    log: str = ""  # its stderr file, to read first when it failed


def _results_ready(job) -> bool:
    if job.num_tasks > 1:
        return all(j.paths.result_pickle.exists() for j in job._sub_jobs)
    return job.paths.result_pickle.exists()


def _collect(job, state: str) -> Outcome:
    stderr = str(job.paths.stderr)
    try:
        result = job.results()  # one entry per task (rank)
        return Outcome(job.job_id, True, result=result, state=state, log=stderr)
    except Exception as err:  # the job raised: submitit hands back its traceback
        text = str(err).split("\n----------------------\nYou can check full logs")[0]
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return Outcome(job.job_id, False, error="\n".join(lines[-10:]), state=state, log=stderr)


def _ended_without_result(job, state: str) -> Outcome:
    """SLURM says the job is over but not every task wrote a result: say why as best we can."""
    stderr = str(job.paths.stderr)
    for task in job._sub_jobs or [job]:
        if task.paths.result_pickle.exists():  # a rank that did finish may have raised: show that
            outcome = _collect(task, state)
            if not outcome.ok:
                return Outcome(job.job_id, False, error=outcome.error, state=state, log=str(task.paths.stderr))
    return Outcome(job.job_id, False, state=state, log=stderr,
                   error=f"SLURM ended the job ({state}) without a result; see {stderr}")


def wait(jobs: Sequence, *, poll_s: float = 5.0, desc: str = "slurm jobs") -> list[Outcome]:
    """Block until every job has a result or has ended in SLURM; one :class:`Outcome` each."""
    outcomes: dict[int, Outcome] = {}
    ended_at: dict[int, float] = {}
    bar = tqdm(total=len(jobs), desc=desc, unit="job")
    try:
        while len(outcomes) < len(jobs):
            pending = [i for i in range(len(jobs)) if i not in outcomes]
            states = slurm_states([jobs[i].job_id for i in pending])
            for i in pending:
                job = jobs[i]
                state = states.get(job.job_id, "UNKNOWN")
                base_state = state.split()[0].rstrip("+")
                if _results_ready(job):
                    outcomes[i] = _collect(job, state)
                elif base_state in ACTIVE_STATES or (base_state == "UNKNOWN" and i not in ended_at):
                    ended_at.pop(i, None)
                    if base_state == "UNKNOWN":
                        ended_at[i] = time.monotonic()  # maybe not registered yet: give it the grace
                    continue
                else:
                    first = ended_at.setdefault(i, time.monotonic())
                    if time.monotonic() - first > RESULT_GRACE_S:
                        outcomes[i] = _ended_without_result(job, state)
                if i in outcomes:
                    bar.update(1)
            ok = sum(o.ok for o in outcomes.values())
            waiting = Counter(states.get(jobs[i].job_id, "UNKNOWN").split()[0].rstrip("+").lower()
                              for i in range(len(jobs)) if i not in outcomes)
            bar.set_postfix(ok=ok, failed=len(outcomes) - ok, **waiting)
            if len(outcomes) < len(jobs):
                time.sleep(poll_s)
    finally:
        bar.close()
    return [outcomes[i] for i in range(len(jobs))]
