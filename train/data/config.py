"""The ``loader:`` section of params.yaml as a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config import check

Backend = Literal["auto", "dali", "cpu"]
SamplingMode = Literal["segments", "single", "contiguous"]


@dataclass(frozen=True)
class LoaderConfig:
    backend: Backend = "auto"
    # Sparse sampling (ClipBERT/ALPRO): the clip is cut into ``num_frames`` segments and one
    # frame is taken from each (random in training, the middle in evaluation).
    num_frames: int = 4
    sampling: SamplingMode = "segments"
    contiguous_stride: int = 1  # only for sampling: contiguous
    image_size: int = 128
    batch_size: int = 16
    num_workers: int = 2
    shuffle_buffer: int = 256
    max_len: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # Random resized crop, one box per clip (all frames share it so motion stays coherent).
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)
    # Colour jitter, one draw per clip. Captions name colours, so hue stays off by default and
    # saturation mild; brightness/contrast do not change which colour a thing is.
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    hue: float = 0.0  # max hue rotation in degrees
    # Horizontal flip would turn "moves left" into a false caption, so it is never applied.
    # The key exists only so that a config asking for it is rejected loudly, not ignored.
    horizontal_flip: bool = False
    resampled: bool = False
    epoch_length: int | None = None  # batches per rank per epoch (required when resampled)
    prefetch: int = 2

    def __post_init__(self) -> None:
        check(self.num_frames >= 1, "num_frames", "must be >= 1")
        check(self.contiguous_stride >= 1, "contiguous_stride", "must be >= 1")
        check(self.image_size >= 8 and self.image_size % 2 == 0, "image_size", "must be an even int >= 8")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.num_workers >= 0, "num_workers", "must be >= 0")
        check(self.shuffle_buffer >= 0, "shuffle_buffer", "must be >= 0")
        check(self.max_len >= 2, "max_len", "must be >= 2 (room for [CLS] and [SEP])")
        check(all(s > 0 for s in self.std), "std", "must be positive")
        lo, hi = self.crop_scale
        check(0 < lo <= hi <= 1, "crop_scale", "must satisfy 0 < min <= max <= 1")
        lo, hi = self.crop_ratio
        check(0 < lo <= hi, "crop_ratio", "must satisfy 0 < min <= max")
        for name in ("brightness", "contrast", "saturation"):
            check(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        check(0 <= self.hue <= 30, "hue", "must be in [0, 30] degrees (captions name colours)")
        check(
            not self.horizontal_flip,
            "horizontal_flip",
            "cannot be enabled: captions say left/right, a flipped clip would contradict them",
        )
        check(self.prefetch >= 1, "prefetch", "must be >= 1")
        check(self.epoch_length is None or self.epoch_length >= 1, "epoch_length", "must be >= 1")
        check(
            not self.resampled or self.epoch_length is not None,
            "epoch_length",
            "must be set when resampled is true (resampled shards never run out)",
        )

    @property
    def frames_per_clip(self) -> int:
        """T of the ``video`` tensor: 1 in single-frame mode, else ``num_frames``."""
        return 1 if self.sampling == "single" else self.num_frames
