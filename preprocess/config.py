"""The ``preprocess:`` section of params.yaml as a frozen dataclass.

Defaults suit the SMAUG CPU default: the loader crops 96-112 px out of clips of 2-6 s, so a
short side of 128 px at 10 fps keeps every shard small, and a keyframe every `keyint` frames
(one per second by default) makes seeking to a few sparse frames cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Literal

from pipeline.config import check, to_dict


@dataclass(frozen=True)
class PreprocessConfig:
    # ---- normalise: what every output video looks like
    target_fps: float = 10.0  # constant output frame rate
    short_side: int = 128  # the shorter side is resized to this (the other keeps the aspect)
    keyint: int = 10  # frames between keyframes (closed GOP, no scene-cut keyframes)
    crf: int = 23  # x264 constant rate factor (lower: better and bigger)
    preset: str = "veryfast"  # x264 preset
    keep_audio: bool = False  # keep the first audio track (AAC, mono); default drops audio
    max_window_s: float = 30.0  # longer videos are cut into windows of this length
    # ---- what counts as bad input (each ends as a `failed` row with the reason)
    min_duration_s: float = 0.5  # shorter videos (and trailing windows) are rejected
    min_side: int = 16  # smaller frames are rejected as absurd
    max_side: int = 8192  # larger frames are rejected as absurd
    max_bytes: int = 8 * 1024**3  # larger source files are rejected as absurd
    max_duration_s: float = 6 * 3600.0  # longer sources are rejected as absurd
    min_decoded_fraction: float = 0.5  # decoded duration below this share of the probed one: truncated
    max_caption_chars: int = 2000  # longer captions / questions are rejected
    transcode_timeout_s: float = 600.0  # one ffmpeg call may run this long
    # ---- shards
    shard_samples: int = 256  # samples (videos, before windowing) per shard
    shard_bytes: int = 512 * 1024**2  # a shard's tar is split into parts past this size
    workers: int | None = None  # parallel transcodes; null: all cores
    cache_dir: str | None = "_cache"  # transcode cache; relative: under --out; null disables it
    probe: Literal["pyav", "ffprobe"] = "pyav"  # pyav: in-process (ffprobe explains failures); ffprobe: always
    ffmpeg: str = "ffmpeg"  # binaries (argument lists only, never a shell)
    ffprobe: str = "ffprobe"

    def __post_init__(self) -> None:
        check(0 < self.target_fps <= 120, "target_fps", "must be in (0, 120]")
        check(self.short_side >= 16 and self.short_side % 2 == 0, "short_side", "must be an even number >= 16")
        check(self.keyint >= 1, "keyint", "must be >= 1")
        check(0 <= self.crf <= 51, "crf", "must be in [0, 51]")
        presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
        check(self.preset in presets, "preset", f"must be one of {', '.join(presets)}")
        check(self.max_window_s > 0, "max_window_s", "must be > 0")
        check(0 <= self.min_duration_s < self.max_window_s, "min_duration_s", "must be in [0, max_window_s)")
        check(1 <= self.min_side <= self.max_side, "min_side", "must be in [1, max_side]")
        check(self.max_bytes > 0, "max_bytes", "must be > 0")
        check(self.max_duration_s > 0, "max_duration_s", "must be > 0")
        check(0 <= self.min_decoded_fraction <= 1, "min_decoded_fraction", "must be in [0, 1]")
        check(self.max_caption_chars >= 1, "max_caption_chars", "must be >= 1")
        check(self.transcode_timeout_s > 0, "transcode_timeout_s", "must be > 0")
        check(self.shard_samples >= 1, "shard_samples", "must be >= 1")
        check(self.shard_bytes >= 1024, "shard_bytes", "must be >= 1024")
        check(self.workers is None or self.workers >= 1, "workers", "must be >= 1 or null (all cores)")

    @property
    def num_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def normalise_fingerprint(self) -> str:
        """Hash of the settings that change a transcoded video (the cache key's second half)."""
        keys = ("target_fps", "short_side", "keyint", "crf", "preset", "keep_audio",
                "max_window_s", "min_duration_s")
        settings = {k: to_dict(self)[k] for k in keys}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
