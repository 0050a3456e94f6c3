"""``synthetic:`` section of params.yaml -> :class:`SyntheticConfig`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.config import check, check_seed, load_params, section

# Clip counts of the presets. `default` generates in about two minutes on 2 cores;
# `large` is for longer runs (see docs/parts/synthetic.md for measurements).
PRESETS: dict[str, int] = {"default": 500, "large": 5000}

KNOWN_FORMATS = ("mp4", "webm", "avi", "gif")
# GIF stores frame delays in centiseconds, so only these rates are exact.
GIF_EXACT_FPS = (10, 20, 25, 50)


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0
    preset: Literal["default", "large"] = "default"
    num_clips: int | None = None  # null: the preset's count
    out_dir: Path = Path("data/raw/synthetic")
    workers: int | None = None  # null: all cores
    train_fraction: float = 0.7
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    held_out_fraction: float = 0.1  # share of colour+shape combinations never in train/val
    held_out_test_share: float = 0.35  # share of test clips that show a held-out combination
    pair_fraction: float = 0.4  # share of clips in temporal-order pairs (same scene, swapped events)
    duration_range: tuple[float, float] = (2.0, 6.0)  # seconds
    max_objects: int = 3
    captions_per_clip: int = 5
    formats: list[str] = field(default_factory=lambda: list(KNOWN_FORMATS))
    sizes: list[tuple[int, int]] = field(
        default_factory=lambda: [(160, 120), (176, 144), (128, 128), (192, 108)]
    )
    fps: list[int] = field(default_factory=lambda: [10, 12, 15, 24, 25])
    gif_fps: int = 10
    # Extra clips for pre-training only, beyond the benchmark (plan.plan_pretrain_clips): drawn
    # like its train clips, never showing a held-out combination, written to webvid_train.csv
    # alone; the benchmark's own clips and every fine-tuning and test file stay as they are.
    pretrain_clips: int = 1500

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check(self.num_clips is None or self.num_clips >= 3, "num_clips", "must be at least 3, one per split (or null)")
        check(self.workers is None or self.workers >= 1, "workers", "must be at least 1 (or null)")
        for name in ("train_fraction", "val_fraction", "test_fraction"):
            check(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")
        total = self.train_fraction + self.val_fraction + self.test_fraction
        check(abs(total - 1.0) < 1e-6, "train_fraction", f"train+val+test fractions must sum to 1, got {total:g}")
        check(self.train_fraction > 0 and self.test_fraction > 0, "test_fraction", "train and test must be non-empty")
        # At most one held-out combination per colour (8 colours x 5 shapes), so every
        # colour and every shape is still seen in training.
        check(0.0 <= self.held_out_fraction <= 0.2, "held_out_fraction", "must be in [0, 0.2]")
        check(0.0 <= self.held_out_test_share < 1.0, "held_out_test_share",
              "must be in [0, 1): test also needs clips of seen combinations")
        check(0.0 <= self.pair_fraction <= 1.0, "pair_fraction", "must be in [0, 1]")
        lo, hi = self.duration_range
        check(0.5 <= lo <= hi <= 60.0, "duration_range", f"need 0.5 <= min <= max <= 60 s, got {lo}, {hi}")
        check(1 <= self.max_objects <= 3, "max_objects", "must be 1, 2 or 3")
        check(1 <= self.captions_per_clip <= 20, "captions_per_clip", "must be in [1, 20]")
        check(0 <= self.pretrain_clips <= 1_000_000, "pretrain_clips", "must be in [0, 1000000]")
        check(len(self.formats) > 0, "formats", "must list at least one format")
        for f in self.formats:
            check(f in KNOWN_FORMATS, "formats", f"unknown format {f!r} (known: {', '.join(KNOWN_FORMATS)})")
        check(len(set(self.formats)) == len(self.formats), "formats", "lists a format twice")
        check(len(self.sizes) > 0, "sizes", "must list at least one WIDTHxHEIGHT pair")
        for w, h in self.sizes:
            # Even sides: H.264/yuv420p needs them; 64 px keeps the shapes recognisable.
            check(64 <= w <= 1920 and 64 <= h <= 1080 and w % 2 == 0 and h % 2 == 0, "sizes",
                  f"{w}x{h}: width and height must be even, 64..1920 x 64..1080")
        check(len(self.fps) > 0, "fps", "must list at least one frame rate")
        for r in self.fps:
            check(1 <= r <= 60, "fps", f"{r}: frame rates must be in [1, 60]")
        check(self.gif_fps in GIF_EXACT_FPS, "gif_fps",
              f"must be one of {GIF_EXACT_FPS} (GIF delays are whole centiseconds)")

    @property
    def clip_count(self) -> int:
        return self.num_clips if self.num_clips is not None else PRESETS[self.preset]

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)


def load_config(params: str | Path | None = None, overrides: list[str] | None = None) -> SyntheticConfig:
    """The ``synthetic`` section of a params file (plus ``key=value`` overrides)."""
    return section(load_params(params, overrides=overrides), SyntheticConfig, "synthetic")
