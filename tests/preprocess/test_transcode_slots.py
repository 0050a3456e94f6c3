"""Transcode slots: never more ffmpegs than workers, and a worker's Python work overlaps its transcodes.

The shard stage runs one thread more than it has workers (preprocess.normalise._SLOTS); the
real ffmpeg runs behind a wrapper that logs when each transcode starts and ends and takes a
little longer, and the real probe is slowed as a network disk would, so that overlaps are
certain where they are allowed and visible where they are not.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import preprocess.shard as shard
from preprocess.api import build_manifest, finalize, plan_shards, process_shards
from preprocess.config import PreprocessConfig
from preprocess.normalise import transcode_slots
from tests.preprocess.helpers import clip_set

GOOD = ["h264", "vp9", "anim", "hevc", "rotated", "long"]


def logging_ffmpeg(folder: Path) -> tuple[str, Path]:
    log = folder / "ffmpeg.log"
    path = folder / "ffmpeg"
    path.write_text(f'#!/bin/bash\ncase "$*" in *-decoders*) exec ffmpeg "$@";; esac\n'
                    f'echo "start $(date +%s.%N)" >> {log}\nsleep 0.4\nffmpeg "$@"\nrc=$?\n'
                    f'echo "end $(date +%s.%N)" >> {log}\nexit $rc\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path), log


def most_at_once(log: Path) -> int:
    events = sorted((float(t), 1 if kind == "start" else -1) for kind, t in
                    (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("workers", [1, 2])
def test_no_more_transcodes_than_workers_and_probes_overlap_them(media, tmp_path, monkeypatch, workers):
    videos, ann = clip_set(media, GOOD, tmp_path)
    ffmpeg, log = logging_ffmpeg(tmp_path)
    probes: list[tuple[float, float]] = []
    real_probe = shard.probe_source

    def timed_probe(*args, **kwargs):  # the real probe, made as slow as a network disk's, its interval noted
        start = time.time()
        try:
            return real_probe(*args, **kwargs)
        finally:
            time.sleep(0.2)
            probes.append((start, time.time()))

    monkeypatch.setattr(shard, "probe_source", timed_probe)
    out = tmp_path / "out"
    cfg = PreprocessConfig(cache_dir=None, shard_samples=len(GOOD), workers=workers, ffmpeg=ffmpeg)
    build_manifest(ann, videos, out, cfg=cfg)
    process_shards(out, plan_shards(out, cfg), cfg, workers, progress=False)
    assert finalize(out)["ok"] == len(GOOD)
    assert all(r["status"] == "ok" for r in pq.read_table(out / "stats.parquet").to_pylist())

    assert most_at_once(log) == workers  # the limit, and reached
    lines = [line.split() for line in log.read_text().splitlines()]
    starts = [float(t) for kind, t in lines if kind == "start"]
    ends = [float(t) for kind, t in lines if kind == "end"]
    transcodes = list(zip(sorted(starts), sorted(ends)))
    # one after the other, a probe ends before its own transcode starts and begins after the one before ends
    overlapped = [p for p in probes if any(min(p[1], e) - max(p[0], s) > 0.1 for s, e in transcodes)]
    assert overlapped, "no video was probed while another one was being transcoded"


def test_slots_refuse_nonsense_and_restore_the_previous_limit():
    import preprocess.normalise as normalise

    with pytest.raises(ValueError, match="transcode slots must be >= 1, got 0"):
        with transcode_slots(0):
            pass
    assert normalise._SLOTS is None
    with transcode_slots(2):
        outer = normalise._SLOTS
        with transcode_slots(1):
            assert normalise._SLOTS is not outer
        assert normalise._SLOTS is outer
    assert normalise._SLOTS is None

