"""Reading samples out of WebDataset shards: shard list, split by rank and worker, shuffle.

A sample is one video: ``<key>.mp4`` (or ``<key>.jpg`` for a still image; encoded bytes,
never decoded here) and ``<key>.json``
(the metadata of design.md). Broken samples become :class:`Skipped` records carrying their
key and reason, so the caller counts and logs them and the epoch goes on.

Splitting: every (rank, worker) pair gets its own shards when there are at least as many
shards as pairs. With fewer shards a pair would get none and hang DDP (webdataset#188), so
then every pair reads all shards and keeps every n-th sample instead: slower, still exactly
once per epoch. Resampled mode (multi-node) draws shards at random forever; the epoch length
is then set by the caller.
"""

from __future__ import annotations

import glob
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds
from webdataset.shardlists import expand_urls

# jpg: a still image (preprocess/images.py), read as a one-frame clip (train/data/image.py)
VIDEO_EXTS = ("mp4", "webm", "mkv", "jpg")


@dataclass
class RawSample:
    key: str
    video: bytes
    meta: dict[str, Any]


@dataclass
class Skipped:
    key: str
    reason: str


# The reason a Skipped carries when the file system could not give a shard at all; the main
# process stops on it (train/data/loader.py) rather than counting lost samples as "broken".
SHARD_UNAVAILABLE = "shard unavailable"


class ShardUnavailable(OSError):
    """A shard that cannot be opened or read at all (gone, no permission, an I/O error): a fault
    of the machine, not of the data, so the run stops, naming it, instead of going on with fewer
    shards while its checkpoint still lists them all."""


def is_machine_fault(exn: BaseException) -> bool:
    """An error of the file system (it carries an errno: ENOENT, EACCES, EIO ...), as opposed to
    a broken tar, which the tar reader reports as a TarError or an errno-less OSError."""
    return isinstance(exn, OSError) and exn.errno is not None


def expand_shards(shards: str | os.PathLike | list) -> list[str]:
    """Brace pattern (``shard-{000000..000009}.tar``), ``::``-joined list, list, or a directory."""
    if isinstance(shards, (list, tuple)):
        urls = [str(s) for s in shards]
    else:
        text = str(shards)
        if os.path.isdir(text):
            urls = sorted(glob.glob(os.path.join(text, "*.tar")))
            if not urls:
                raise FileNotFoundError(f"shard folder {text} holds no .tar files")
            # The folder's own list (preprocess writes it): a shard renamed or deleted from the
            # folder would otherwise just drop out of the glob, and the run would go on with fewer.
            written = _written_shards(text)
            gone = [n for n in written if not os.path.exists(os.path.join(text, n))]
            if gone:
                raise FileNotFoundError(
                    f"{len(gone)} of the {len(written)} shards preprocessing wrote to {text} are missing, "
                    f"e.g. {gone[0]} (stats_summary.json lists them): restore them and rerun")
        else:
            urls = expand_urls(text)
    if not urls:
        raise FileNotFoundError(f"no shards in {shards!r}")
    missing = [u for u in urls if "://" not in u and not Path(u).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(urls)} shards missing, e.g. {missing[0]}")
    return urls


def _written_shards(folder: str) -> list[str]:
    """Shard names ``stats_summary.json`` says preprocessing wrote to ``folder`` ([] if none)."""
    try:
        with open(os.path.join(folder, "stats_summary.json")) as f:
            names = json.load(f).get("shards") or []
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and "/" not in n]


def plan_split(num_shards: int, rank: int, world_size: int, worker: int, num_workers: int) -> tuple[int, int, bool]:
    """(slot, slots, by_sample): this pair's slot among all pairs, and whether to split samples."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, {world_size})")
    slots = world_size * max(num_workers, 1)
    slot = rank * max(num_workers, 1) + worker
    return slot, slots, num_shards < slots


def _shard_order(urls: list[str], *, shuffle: bool, seed: int, epoch: int) -> list[str]:
    # Same permutation on every rank and worker (seeded by seed and epoch only), so the
    # split below stays a partition.
    urls = list(urls)
    if shuffle:
        random.Random(f"shards/{seed}/{epoch}").shuffle(urls)
    return urls


def iter_samples(
    urls: list[str],
    *,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    seed: int,
    epoch: int,
    train: bool,
    resampled: bool,
    shuffle_buffer: int,
) -> Iterator[RawSample | Skipped]:
    """This (rank, worker)'s samples for one epoch (endless when ``resampled``)."""
    slot, slots, by_sample = plan_split(len(urls), rank, world_size, worker, num_workers)
    if resampled:
        # Independent random shard draws per pair; epoch length is enforced downstream.
        rng = random.Random(f"resample/{seed}/{epoch}/{slot}")
        source = ({"url": rng.choice(urls)} for _ in iter(int, 1))
        keep = None
    else:
        order = _shard_order(urls, shuffle=train, seed=seed, epoch=epoch)
        mine = order if by_sample else order[slot::slots]
        source = ({"url": u} for u in mine)
        keep = (slot, slots) if by_sample else None

    errors: list[Skipped] = []
    reading = {"url": "<shard>"}  # the shard being read: an error partway through names no file

    def remember(shards):
        for item in shards:
            reading["url"] = item["url"]
            yield item

    def handler(exn: Exception) -> bool:
        # A broken tar member or shard: record it and go on (webdataset calls this). A shard the
        # file system cannot give us travels the same way, marked, and stops the main process
        # (raising here, inside a loader worker, would leave the workers to hang on exit).
        url = _url_of(exn)
        url = reading["url"] if url == "<shard>" else url
        if is_machine_fault(exn):
            errors.append(Skipped(key=url, reason=f"{SHARD_UNAVAILABLE}: {exn}"[:300]))
            return True
        errors.append(Skipped(key=url, reason=f"tar error: {exn!r}"[:300]))
        return True

    stream = _parse(wds.tariterators.tarfile_samples(remember(source), handler=handler), errors)
    if keep is not None:
        stream = (s for i, s in enumerate(stream) if i % keep[1] == keep[0])
    if train and shuffle_buffer > 1:
        rng = random.Random(f"shuffle/{seed}/{epoch}/{slot}")
        stream = _shuffled(stream, shuffle_buffer, rng)
    yield from stream


def _url_of(exn: Exception) -> str:
    for arg in reversed(getattr(exn, "args", ())):
        if isinstance(arg, str) and arg.endswith(".tar"):
            return arg
    return "<shard>"


def _parse(samples, errors: list[Skipped]) -> Iterator[RawSample | Skipped]:
    for sample in samples:
        while errors:
            yield errors.pop(0)
        key = sample.get("__key__", "<unknown>")
        video_ext = next((e for e in VIDEO_EXTS if e in sample), None)
        if video_ext is None:
            yield Skipped(key, f"no video member (has {sorted(k for k in sample if not k.startswith('__'))})")
            continue
        if "json" not in sample:
            yield Skipped(key, "no json member")
            continue
        try:
            meta = json.loads(sample["json"])
            if not isinstance(meta, dict):
                raise ValueError(f"json is a {type(meta).__name__}, not an object")
            num_frames = int(meta["video"]["num_frames"])
            if num_frames < 1:
                raise ValueError(f"video.num_frames = {num_frames}")
        except (ValueError, KeyError, TypeError) as err:
            yield Skipped(key, f"bad json: {err!r}"[:300])
            continue
        meta.setdefault("key", key)
        yield RawSample(key=key, video=sample[video_ext], meta=meta)
    while errors:
        yield errors.pop(0)


def _shuffled(stream, bufsize: int, rng: random.Random):
    # Skips pass straight through, so they are counted even if the buffer never drains.
    buf: list = []
    for item in stream:
        if isinstance(item, Skipped):
            yield item
            continue
        buf.append(item)
        if len(buf) >= bufsize:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf
