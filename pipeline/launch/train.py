"""``python -m pipeline.launch.train [--launch local|slurm] [--entry train.pretrain] [--name N] ARGS``.

Runs a training program (``entry.main(ARGS)``, default ``train.pretrain``) here or as a SLURM
DDP job of ``launch.slurm.nodes x tasks_per_node`` ranks, and waits for it. ARGS are the
program's own (``--recipe smaug pretrain.steps=100 ...``); ``--params`` and ``launch.*=...``
overrides among them also select the launch settings. On SLURM the job checkpoints before its
time limit and requeues itself (up to ``launch.slurm.max_num_timeout`` times), resuming from the
checkpoint; this command returns once the training has finished (0) or failed (1).
``launch.mode: dask`` has no meaning for training and runs locally.

Fine-tuning (``train.finetune``) is one process: ``--entry train.finetune --nodes 1
--tasks-per-node 1``, so a DDP-sized ``launch.slurm`` does not start copies of it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import io
import re
import sys
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.launch.config import LaunchConfig
from pipeline.launch.preprocess import launch_config


def _params_and_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    params = None
    for i, a in enumerate(args):
        if a == "--params" and i + 1 < len(args):
            params = args[i + 1]
        elif a.startswith("--params="):
            params = a.split("=", 1)[1]
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    return params, overrides


# the training programs this launcher runs (any module with main(argv) -> exit code also works)
KNOWN_ENTRIES = ("train.pretrain", "train.finetune")


def check_entry(entry: str) -> None:
    """Refuse an ``--entry`` whose module does not exist, before any job is submitted: a typo
    would otherwise end in a ModuleNotFoundError traceback, here or in a SLURM job's log. Only the
    module is looked up, not imported, so a real module that fails to import keeps its traceback."""
    module = entry.partition(":")[0]
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing too
        found = False
    if not found:
        raise ConfigError(f"--entry: no module '{module}'; known: {', '.join(KNOWN_ENTRIES)}")


def with_job_size(cfg: LaunchConfig, nodes: int | None, tasks_per_node: int | None) -> LaunchConfig:
    """``--nodes`` / ``--tasks-per-node`` for this job; on GPU nodes one GPU per task."""
    s = cfg.slurm
    changes: dict = {}
    if nodes is not None:
        changes["nodes"] = nodes
    if tasks_per_node is not None:
        changes["tasks_per_node"] = tasks_per_node
        if s.gpus_per_node:
            changes["gpus_per_node"] = tasks_per_node
    if not changes:
        return cfg
    try:
        return dataclasses.replace(cfg, slurm=dataclasses.replace(s, **changes))
    except ConfigError as err:
        raise ConfigError(f"launch.slurm.{err}") from None


def main(argv: list[str] | None = None) -> int:
    from pipeline.launch.distributed import run_local, submit
    from pipeline.launch.slurm import wait

    argv = sys.argv[1:] if argv is None else list(argv)
    # allow_abbrev=False: the wrapped program's own flags (e.g. --task) must not be read as
    # abbreviations of ours (--tasks-per-node).
    ours = argparse.ArgumentParser(prog="python -m pipeline.launch.train", add_help=False,
                                   allow_abbrev=False)
    ours.add_argument("--launch", choices=["local", "dask", "slurm"], default=None)
    ours.add_argument("--entry", default="train.pretrain", help="module with main(argv) -> exit code")
    ours.add_argument("--name", default=None, help="job name / log sub-folder (default: from --entry)")
    ours.add_argument("--nodes", type=int, default=None, help="override launch.slurm.nodes for this job")
    ours.add_argument("--tasks-per-node", type=int, default=None,
                      help="override launch.slurm.tasks_per_node (1 for single-process programs)")
    known, rest = ours.parse_known_args(argv)
    params, overrides = _params_and_overrides(rest)
    try:
        check_entry(known.entry)
        cfg = launch_config(params, overrides, known.launch)
        cfg = with_job_size(cfg, known.nodes, known.tasks_per_node)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "--print-config" in rest:  # what this launch would run with, --launch and the job size included
        return run_local(known.entry, [*rest, f"launch.mode={cfg.mode}", f"launch.slurm.nodes={cfg.slurm.nodes}",
                                       f"launch.slurm.tasks_per_node={cfg.slurm.tasks_per_node}",
                                       f"launch.slurm.gpus_per_node={cfg.slurm.gpus_per_node}"])
    if cfg.mode != "slurm":
        return run_local(known.entry, rest)
    if known.entry in KNOWN_ENTRIES:
        # the program's own settings, here: a bad value would otherwise wait in the queue for an
        # allocation and fail on the node
        with contextlib.redirect_stdout(io.StringIO()):
            checked = run_local(known.entry, [*rest, "--print-config"])
        if checked != 0:
            return checked
    name = known.name or known.entry.split(":")[0].rsplit(".", 1)[-1]
    try:
        job = submit(cfg, known.entry, rest, name)
    except Exception as err:  # sbatch refused or is missing (submitit's FailedJobError, OSError)
        print(f"error: submitting the {name} job failed: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}",
              file=sys.stderr)
        return 1
    (outcome,) = wait([job], poll_s=cfg.slurm.poll_s, desc=f"{name} job")
    if outcome.ok:
        restarts = max(r.get("restarts", 0) for r in outcome.result)
        print(f"[launch] {name}: job {outcome.job_id} finished on {len(outcome.result)} rank(s)"
              f"{f' after {restarts} requeue(s)' if restarts else ''}", flush=True)
        return 0
    line, code = job_failure(name, outcome)
    print(line, file=sys.stderr)
    return code


def job_failure(name: str, outcome) -> tuple[str, int]:
    """One ``error:`` line for a failed job, and the exit status to pass on.

    A program that stopped with its own ``error:`` line and status (2: its input or settings, 1:
    the machine) says so in the job's stderr: that line and status are passed on, as if it had
    run here. Otherwise (killed, out of time, a crash) SLURM's state and the traceback's last line,
    and 1.
    """
    status = re.search(r"exited with status (\d+)", outcome.error or "")
    own = ""
    try:
        own = next((x for x in reversed(Path(outcome.log).read_text(errors="replace").splitlines())
                    if x.startswith("error: ")), "")
    except OSError:
        pass
    if status and own:
        return f"error: {name} job {outcome.job_id}: {own[len('error: '):]} (log {outcome.log})", int(status.group(1))
    last = (outcome.error or "").strip().splitlines()[-1:] or [f"SLURM state {outcome.state}"]
    return f"error: {name} job {outcome.job_id} failed: {last[0]} (log {outcome.log})", 1


if __name__ == "__main__":
    sys.exit(main())
