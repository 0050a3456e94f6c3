"""``python -m pipeline.launch.preprocess [--launch local|dask|slurm] <python -m preprocess args>``.

The preprocessing stage in any launch mode; the arguments are those of ``python -m preprocess``.

* ``local``: exactly ``python -m preprocess`` (a thread pool of transcodes on this machine);
* ``dask``: the manifest is built here, the shards' samples run on ``launch.dask``'s cluster;
* ``slurm``: the manifest is built here, then one SLURM array task per ``launch.slurm.
  shards_per_task`` shards (``array_parallelism`` at once), each task transcoding its shards with
  ``cpus_per_task`` threads. Failed tasks are resubmitted alone; finished shards are never redone.

At the end the per-shard stats are merged into ``stats.parquet`` (only once every shard is
written) and a summary names what failed: array tasks (with their log files) and samples.
The command waits for the cluster and exits non-zero if anything failed, so DVC sees the
outputs only after they exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipeline import cli
from pipeline.config import ConfigError, load_params, section
from pipeline.launch.config import LaunchConfig


@dataclasses.dataclass
class ShardTask:
    """One array task: process a group of shards (skips those already finished)."""

    out: str
    manifest: str
    cfg: object  # PreprocessConfig
    workers: int

    def __call__(self, shard_ids: list[int]) -> list[dict]:
        from preprocess.api import process_shards

        return process_shards(Path(self.out), list(shard_ids), self.cfg, self.workers,
                              manifest=Path(self.manifest), progress=False)


def launch_config(params: str | None, overrides: list[str], mode: str | None) -> LaunchConfig:
    data = load_params(params, overrides=overrides)
    if mode:
        data.setdefault("launch", {})
        data["launch"] = {**(data["launch"] or {}), "mode": mode}
    return section(data, LaunchConfig, "launch")


def main(argv: list[str] | None = None) -> int:
    from preprocess import __main__ as prep_cli
    from preprocess.faults import StopRun

    argv = sys.argv[1:] if argv is None else list(argv)
    ours = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    ours.add_argument("--launch", choices=["local", "dask", "slurm"], default=None)
    known, rest = ours.parse_known_args(argv)
    args = prep_cli.parse_args(rest)
    try:
        cfg_launch = launch_config(args.params, args.overrides, known.launch)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        return prep_cli.main(rest)
    if cfg_launch.mode == "local":
        return prep_cli.main(rest)

    # The manifest (cheap: reads annotations, probes nothing heavy) is built here, as locally.
    if args.stage in ("all", "ingest"):
        code = prep_cli.main([*rest, "--stage", "ingest"])
        if code or args.stage == "ingest":
            return code
    try:
        cfg = prep_cli.load_config(args.params, args.overrides)
        if args.shard_size is not None:
            cfg = dataclasses.replace(cfg, shard_samples=args.shard_size)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _shard_on_cluster(args, cfg, cfg_launch)
    except StopRun as err:  # a full disk, a second job on the folder: one line, rerun to finish
        return cli.fail(err, code=1)


def _shard_on_cluster(args, cfg, cfg_launch: LaunchConfig) -> int:
    from preprocess.api import finalize, plan_shards, process_shards

    out = Path(args.out).resolve()
    manifest = Path(args.manifest).resolve() if args.manifest else out / "manifest.parquet"
    ids = plan_shards(out, cfg, manifest=manifest)
    name = f"preprocess-{out.name}"
    failed_tasks = ""
    if cfg_launch.mode == "dask":
        from pipeline.launch.dask_cluster import dask_client

        workers = args.workers or cfg_launch.dask.workers * cfg_launch.dask.threads_per_worker
        with dask_client(cfg_launch) as client:
            process_shards(out, ids, cfg, workers, manifest=manifest, client=client,
                           progress=not args.no_progress)
    else:
        from pipeline.launch.array import run_array

        task = ShardTask(str(out), str(manifest), cfg, args.workers or cfg_launch.slurm.cpus_per_task)
        report = run_array(task, ids, cfg_launch, name)
        print(report.summary(), file=sys.stderr, flush=True)
        if not report.ok:
            failed_tasks = ", ".join(str(i) for g in (report.groups[i] for i in report.failed) for i in g)
    if failed_tasks:
        print(f"error: shards {failed_tasks} were not written; stats.parquet not merged. Rerun the same "
              "command: finished shards are skipped.", file=sys.stderr)
        return 1
    summary = finalize(out, manifest=manifest)
    print(json.dumps({k: v for k, v in summary.items() if k != "shards"}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
