"""The four steps of preprocessing, as functions the CLI, DVC and the SLURM launcher all call.

    manifest = build_manifest(annotations, videos, out / "manifest.parquet", fmt, split, cfg)
    ids = plan_shards(out, cfg, manifest=manifest)          # deterministic shard ids
    process_shards(out, ids, cfg, workers, manifest=manifest)  # any subset, any order, rerunnable
    summary = finalize(out, manifest=manifest)              # stats.parquet + stats_summary.json

A launcher may split ``ids`` across jobs (each job calls :func:`process_shards` on its share),
then call :func:`finalize` once. ``manifest`` defaults to ``out/manifest.parquet``.

Everything a run writes lives under ``out``: the transcode cache too, when
``preprocess.cache_dir`` is relative (default ``_cache``: ``out/_cache``), so a command run from
another folder never litters it, and deleting ``out`` deletes all of it. An absolute
``cache_dir`` is used as is, so that several outputs of the same videos can share one cache
(entries are written under temporary names and renamed whole, so sharing is safe).

Reliability (see :mod:`preprocess.faults` and :mod:`preprocess.lock`): an error of the machine
stops the shard without its stats, so the rerun redoes it and no good video is marked failed;
one job writes a folder at a time, while SLURM array tasks write different shards of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
from collections import Counter
from pathlib import Path

import dask
import pyarrow.parquet as pq
from tqdm import tqdm

from preprocess.config import PreprocessConfig
from preprocess.faults import StopRun
from preprocess.ingest import build_manifest, manifest_rows, read_slice
from preprocess.shard import (STATS_DIR, WORK_DIR, STATS_SCHEMA, clear_unfinished, manifest_window_keys,
                              process_sample, shard_done, shard_name, stats_path, temp_name, write_shard)
from preprocess.lock import hold, hold_folder
from preprocess.normalise import sweep_stale_temps, transcode_slots

__all__ = ["build_manifest", "plan_shards", "process_shards", "finalize"]

PLAN_FILE = "_plan.json"


def _manifest_path(out: Path, manifest: Path | str | None) -> Path:
    return Path(manifest) if manifest is not None else Path(out) / "manifest.parquet"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plan_shards(out: Path | str, cfg: PreprocessConfig = PreprocessConfig(), *,
                manifest: Path | str | None = None) -> list[int]:
    """All shard ids of this manifest (0 .. n-1); records the plan in ``out/_plan.json``.

    Refuses an ``out`` folder that already holds shards of another manifest or shard size,
    since mixing them would put a sample in two shards.
    """
    out, manifest = Path(out), _manifest_path(out, manifest)
    n = manifest_rows(manifest)
    plan = {"manifest_sha256": _file_digest(manifest), "samples": n, "shard_samples": cfg.shard_samples,
            "shards": math.ceil(n / cfg.shard_samples)}
    out.mkdir(parents=True, exist_ok=True)
    plan_file = out / PLAN_FILE
    with hold_folder(out):
        if plan_file.exists():
            old = json.loads(plan_file.read_text())
            if old != plan and any((out / STATS_DIR).glob("shard-*.parquet")):
                raise StopRun(f"{out} holds shards of another plan ({old}); use an empty --out or delete it")
        for stale in out.glob(f".{PLAN_FILE}.*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
        tmp = temp_name(plan_file)
        tmp.write_text(json.dumps(plan, indent=1))
        os.replace(tmp, plan_file)
    return list(range(plan["shards"]))


def _shard_samples(manifest: Path, shard_id: int, cfg: PreprocessConfig) -> list[dict]:
    start = shard_id * cfg.shard_samples
    return read_slice(manifest, start, start + cfg.shard_samples)


def process_shards(out: Path | str, shard_ids: list[int], cfg: PreprocessConfig = PreprocessConfig(),
                   workers: int | None = None, *, manifest: Path | str | None = None,
                   client=None, progress: bool = True) -> list[dict]:
    """Normalise and write the given shards with dask; finished shards are skipped.

    Samples are dask tasks (so one big shard still uses every core) and each shard's writer
    task depends on its samples. Only a bounded number of samples is in flight, so memory
    stays bounded whatever the size of the manifest.

    Without ``client``: dask's threaded scheduler with ``workers`` transcodes at once (default
    ``cfg.workers``, all cores) and one thread more, which copies and probes the next video
    while they run. Threads suffice, since each transcode is an ffmpeg child
    process, and they cost far less than a distributed cluster (whose in-process event loop
    and profiler added 15-35% to a 1-core run on this machine). The shards run in waves of at
    least ``32 * workers`` samples, so the idle tail of a wave stays small.
    With ``client`` (a ``distributed.Client``, e.g. on a dask-jobqueue cluster): futures, with
    a few shards in flight.
    """
    out, manifest = Path(out), _manifest_path(out, manifest)
    cfg = dataclasses.replace(cfg, cache_dir=resolve_cache_dir(out, cfg.cache_dir))
    workers = workers or cfg.num_workers
    todo = [i for i in shard_ids if not shard_done(out, i)]
    if not todo:
        return []
    if cfg.cache_dir:  # what a killed run left half-written (twice the time limit: never a live one)
        sweep_stale_temps(cfg.cache_dir, 2 * cfg.transcode_timeout_s)
    n = manifest_rows(manifest)
    total = sum(max(0, min(cfg.shard_samples, n - i * cfg.shard_samples)) for i in todo)
    bar = tqdm(total=total, unit="video", desc=f"shards {out.name}", disable=not progress)
    try:
        if client is None:
            return _process_threaded(out, todo, cfg, workers, manifest, bar)
        return _process_distributed(out, todo, cfg, workers, manifest, bar, client)
    finally:
        bar.close()
        try:
            (out / WORK_DIR).rmdir()  # only if empty: other jobs may share this folder
        except OSError:
            pass


def resolve_cache_dir(out: Path, cache_dir: str | None) -> str | None:
    """The transcode cache folder: an absolute ``cache_dir`` as is (one cache may serve several
    outputs), a relative one under ``out`` (never under whatever folder the command ran in)."""
    if not cache_dir:
        return None
    return str(Path(cache_dir) if Path(cache_dir).is_absolute() else Path(out) / cache_dir)


def _open_shard(out: Path, manifest: Path, shard_id: int, cfg: PreprocessConfig,
                locks: contextlib.ExitStack) -> tuple[list[dict], str]:
    """Lock this shard (held until ``locks`` closes), clear what a killed run left of it, and
    return its samples and its work folder."""
    locks.enter_context(hold(out / WORK_DIR / f"{shard_name(shard_id)}.lock", f"{out} ({shard_name(shard_id)})"))
    clear_unfinished(out, shard_id)
    work = out / WORK_DIR / shard_name(shard_id)
    work.mkdir(parents=True, exist_ok=True)
    return _shard_samples(manifest, shard_id, cfg), str(work)


def is_sample_result(result) -> bool:
    """Whether a finished dask task is one sample (what the bar counts), not a shard writer:
    both results carry ``outputs``, and counting the writers too ran the bar past its total
    by one per shard (402/400 for two shards)."""
    return isinstance(result, dict) and "outputs" in result and "shard" not in result


def _process_threaded(out, todo, cfg, workers, manifest, bar) -> list[dict]:
    from dask.callbacks import Callback
    from dask.threaded import get as threaded_scheduler  # as a function: naming "threads" makes dask
    # import dask.distributed to look for a client (0.6 s of a small job's start-up)

    def count(key, result, dsk, state, worker_id):
        if is_sample_result(result):
            bar.update(1)

    results, queue = [], list(todo)
    window_keys = manifest_window_keys(manifest)
    while queue:
        writers, size = [], 0
        with contextlib.ExitStack() as locks:  # this wave's shard locks
            while queue and (not writers or size < max(32 * workers, cfg.shard_samples)):
                shard_id = queue.pop(0)
                samples, work = _open_shard(out, manifest, shard_id, cfg, locks)
                done = [dask.delayed(process_sample, pure=False)(s, work, cfg) for s in samples]
                writers.append(dask.delayed(write_shard, pure=False)(out, shard_id, samples, done, cfg, window_keys))
                size += len(samples)
            # one thread more than transcode slots: it prepares the next video (copy, probe) and
            # checks or writes finished ones while the ffmpegs run (preprocess.normalise._SLOTS)
            with Callback(posttask=count), transcode_slots(workers):
                results += dask.compute(*writers, scheduler=threaded_scheduler, num_workers=workers + 1)
    return sorted(results, key=lambda r: r["shard"])


def _process_distributed(out, todo, cfg, workers, manifest, bar, client) -> list[dict]:
    from distributed import as_completed

    max_in_flight = max(2, math.ceil(2 * workers / cfg.shard_samples) + 1)
    results, queue, shard_locks, done = [], list(todo), {}, as_completed()
    window_keys = manifest_window_keys(manifest)
    try:
        while queue or shard_locks:
            while queue and len(shard_locks) < max_in_flight:
                shard_id = queue.pop(0)
                locks = contextlib.ExitStack()  # this process holds the shard's lock for the cluster
                samples, work = _open_shard(out, manifest, shard_id, cfg, locks)
                futures = [client.submit(process_sample, s, work, cfg, pure=False) for s in samples]
                for f in futures:
                    done.add(f)
                writer = client.submit(write_shard, out, shard_id, samples, futures, cfg, window_keys, pure=False)
                shard_locks[writer] = locks
                done.add(writer)
            future = next(done)
            if future in shard_locks:
                with shard_locks.pop(future):
                    results.append(future.result())  # a failed write is a real error: raise it
            else:
                bar.update(1)
    finally:
        for locks in shard_locks.values():
            locks.close()
    return sorted(results, key=lambda r: r["shard"])


def finalize(out: Path | str, *, manifest: Path | str | None = None) -> dict:
    """Merge per-shard stats into ``out/stats.parquet`` (one row per input row, in input order
    within each shard) and write ``out/stats_summary.json``; return the summary.

    With a plan on disk, every planned shard must be finished first.
    """
    out = Path(out)
    with hold_folder(out):
        return _finalize(out)


def _finalize(out: Path) -> dict:
    for stale in out.glob(".stats.parquet.*.tmp"):  # left by a killed finalize
        stale.unlink(missing_ok=True)
    plan_file = out / PLAN_FILE
    if plan_file.exists():
        planned = json.loads(plan_file.read_text())["shards"]
        missing = [i for i in range(planned) if not shard_done(out, i)]
        if missing:
            raise StopRun(f"{len(missing)} shard(s) not finished yet (first: {shard_name(missing[0])}); "
                               "rerun process_shards")
        files = [stats_path(out, i) for i in range(planned)]
    else:
        files = sorted((out / STATS_DIR).glob("shard-*.parquet"))
    status, reasons, n = Counter(), Counter(), 0
    tmp = temp_name(out / "stats.parquet")
    with pq.ParquetWriter(tmp, STATS_SCHEMA) as writer:
        for path in files:
            table = pq.read_table(path, schema=STATS_SCHEMA).sort_by("row")
            writer.write_table(table)
            n += table.num_rows
            for s, e in zip(table.column("status").to_pylist(), table.column("error").to_pylist()):
                status[s] += 1
                if e:
                    reasons[e.split(":")[0].split(" (")[0]] += 1
    os.replace(tmp, out / "stats.parquet")
    summary = {"rows": n, "ok": status["ok"], "failed": status["failed"],
               "failures_by_reason": dict(reasons.most_common()),
               "shards": sorted(p.name for p in out.glob("shard-*.tar"))}
    (out / "stats_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary
