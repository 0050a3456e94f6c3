"""Small real shards for the loader tests: ffmpeg-made clips in WebDataset tars (design.md format)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import webdataset as wds

FPS, WIDTH, HEIGHT, KEYINT = 12, 128, 96, 12


def make_clip(path: Path, seconds: float, codec: str = "h264", pattern: str = "testsrc2") -> None:
    enc = {
        "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-movflags", "+faststart"],
        "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "0", "-crf", "30"],
    }[codec]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"{pattern}=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={seconds}",
         *enc, "-g", str(KEYINT), "-keyint_min", str(KEYINT), "-sc_threshold", "0",
         "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )


def meta_for(key: str, seconds: float, codec: str, captions: list[str]) -> dict:
    n = int(round(seconds * FPS))
    return {
        "key": key, "source": f"videos/{key}.webm", "format": "webvid", "captions": captions,
        "qa": [{"question": f"what is in {key}?", "answer": "circle", "answer_type": "what",
                "options": None, "answer_idx": None}],
        "split": "train",
        "video": {"fps": float(FPS), "num_frames": n, "width": WIDTH, "height": HEIGHT,
                  "duration": seconds, "codec": codec, "pix_fmt": "yuv420p", "keyint": KEYINT},
        "source_probe": {}, "normalize": {"target_fps": FPS, "short_side": HEIGHT}, "extra": {},
    }


def write_shards(folder: Path, clips: dict[str, tuple[bytes, bytes | dict]], per_shard: int, ext: str = "mp4") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(clips)
    paths = []
    for s in range(0, len(keys), per_shard):
        path = folder / f"shard-{s // per_shard:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for key in keys[s : s + per_shard]:
                video, meta = clips[key]
                raw_json = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
                sink.write({"__key__": key, ext: video, "json": raw_json})
        paths.append(path)
    return paths


class ShardSet:
    def __init__(self, folder: Path, paths: list[Path], videos: dict[str, bytes], metas: dict[str, dict]):
        self.folder, self.paths, self.videos, self.metas = folder, paths, videos, metas

    @property
    def keys(self) -> list[str]:
        return list(self.metas)


DURATIONS = [2.0, 3.0, 4.0, 2.5]


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory) -> dict:
    """Four H.264 and two VP9 clips of different lengths, encoded once per session."""
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for i, seconds in enumerate(DURATIONS):
        path = folder / f"h264_{i}.mp4"
        make_clip(path, seconds)
        out[("h264", i)] = path.read_bytes()
    for i, seconds in enumerate(DURATIONS[:2]):
        path = folder / f"vp9_{i}.webm"
        make_clip(path, seconds, codec="vp9")
        out[("vp9", i)] = path.read_bytes()
    return out


def _captions(key: str) -> list[str]:
    return [f"{key} a red circle moves left", f"{key} a blue square on the right", f"{key} shapes move"]


@pytest.fixture(scope="session")
def h264_shards(tmp_path_factory, clip_cache) -> ShardSet:
    """16 samples (4 distinct clips reused) in 4 shards of 4."""
    folder = tmp_path_factory.mktemp("h264_shards")
    clips, videos, metas = {}, {}, {}
    for n in range(16):
        key = f"clip_{n:05d}"
        i = n % len(DURATIONS)
        meta = meta_for(key, DURATIONS[i], "h264", _captions(key))
        clips[key] = (clip_cache[("h264", i)], meta)
        videos[key], metas[key] = clip_cache[("h264", i)], meta
    return ShardSet(folder, write_shards(folder, clips, per_shard=4), videos, metas)


@pytest.fixture(scope="session")
def broken_shards(tmp_path_factory, clip_cache) -> ShardSet:
    """6 good samples plus a truncated mp4 (clip_bad_trunc) and bad JSON (clip_bad_json), 2 shards."""
    folder = tmp_path_factory.mktemp("broken_shards")
    clips, videos, metas = {}, {}, {}
    for n in range(8):
        key = f"clip_{n:05d}"
        meta = meta_for(key, DURATIONS[n % 4], "h264", _captions(key))
        clips[key] = (clip_cache[("h264", n % 4)], meta)
        videos[key], metas[key] = clip_cache[("h264", n % 4)], meta
        if n == 2:
            good = clip_cache[("h264", 2)]
            clips["clip_bad_trunc"] = (good[: len(good) // 3], meta_for("clip_bad_trunc", 4.0, "h264", ["x"]))
        if n == 5:
            clips["clip_bad_json"] = (clip_cache[("h264", 0)], b'{"key": "clip_bad_json", "video": {')
    return ShardSet(folder, write_shards(folder, clips, per_shard=5), videos, metas)


@pytest.fixture(scope="session")
def vp9_shards(tmp_path_factory, clip_cache) -> ShardSet:
    """4 VP9 webm samples (DALI's CPU decoder reads VP9, not H.264) in 2 shards."""
    folder = tmp_path_factory.mktemp("vp9_shards")
    clips, videos, metas = {}, {}, {}
    for n in range(4):
        key = f"vp9_{n:05d}"
        meta = meta_for(key, DURATIONS[n % 2], "vp9", _captions(key))
        clips[key] = (clip_cache[("vp9", n % 2)], meta)
        videos[key], metas[key] = clip_cache[("vp9", n % 2)], meta
    return ShardSet(folder, write_shards(folder, clips, per_shard=2, ext="webm"), videos, metas)


@pytest.fixture(scope="session")
def broken_vp9_shards(tmp_path_factory, clip_cache) -> ShardSet:
    """3 good VP9 samples plus a truncated webm (vp9_bad_trunc) and bad JSON (vp9_bad_json)."""
    folder = tmp_path_factory.mktemp("broken_vp9_shards")
    clips, videos, metas = {}, {}, {}
    for n in range(3):
        key = f"vp9_{n:05d}"
        meta = meta_for(key, DURATIONS[n % 2], "vp9", _captions(key))
        clips[key] = (clip_cache[("vp9", n % 2)], meta)
        videos[key], metas[key] = clip_cache[("vp9", n % 2)], meta
        if n == 0:
            good = clip_cache[("vp9", 1)]
            clips["vp9_bad_trunc"] = (good[: len(good) // 3], meta_for("vp9_bad_trunc", 3.0, "vp9", ["x"]))
        if n == 1:
            clips["vp9_bad_json"] = (clip_cache[("vp9", 0)], b"not json at all")
    return ShardSet(folder, write_shards(folder, clips, per_shard=5, ext="webm"), videos, metas)
