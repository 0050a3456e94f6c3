"""From a raw shard sample to what a backend decodes: frame indices, crop, colour, text.

Everything random about a sample is decided here, from RNGs seeded by (seed, epoch, key),
so the CPU and DALI backends produce the same frames, crops and captions for the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from train.data.augment import Augment, draw_augment
from train.data.config import LoaderConfig
from train.data.sampling import STREAM_AUGMENT, STREAM_FRAMES, sample_frame_indices, sample_rng
from train.data.shards import RawSample
from train.data.text import pick_text

# The private batch key through which workers report skipped samples to the main process.
SKIPPED = "_skipped"
BATCH_KEYS = ("video", "frame_indices", "input_ids", "attention_mask", "text", "key", "meta")


@dataclass
class PlannedSample:
    key: str
    video: bytes
    meta: dict[str, Any]
    indices: np.ndarray  # int64 [T]
    augment: Augment
    text: str


def plan_sample(raw: RawSample, cfg: LoaderConfig, *, train: bool, text: str, seed: int, epoch: int,
                view: str = "centre") -> PlannedSample:
    """Raises ValueError / KeyError on metadata that cannot be planned (the caller skips it).
    ``view``: the evaluation crop (``augment.TEST_VIEWS``); training draws its own boxes."""
    info = raw.meta["video"]
    num_frames, height, width = int(info["num_frames"]), int(info["height"]), int(info["width"])
    frames_rng = sample_rng(seed, epoch, raw.key, STREAM_FRAMES) if train else None
    indices = sample_frame_indices(
        num_frames, cfg.num_frames, cfg.sampling, train=train, rng=frames_rng, stride=cfg.contiguous_stride
    )
    aug_rng = sample_rng(seed, epoch, raw.key, STREAM_AUGMENT) if train else None
    augment = draw_augment(cfg, height, width, train=train, rng=aug_rng, view=view)
    chosen = pick_text(raw.meta, text, seed=seed, epoch=epoch, train=train)
    return PlannedSample(raw.key, raw.video, raw.meta, indices, augment, chosen)
