"""Which frames of a clip the model sees: sparse temporal sampling.

Both backends call :func:`sample_frame_indices` with the sample's ``num_frames`` from its
JSON and an RNG from :func:`sample_rng`, so for the same seed, epoch and key the CPU and the
DALI path decode exactly the same frames, whatever worker or rank handles the sample.

Modes:
- ``segments`` (ClipBERT / ALPRO): cut the clip into T equal segments, take a random frame
  from each in training and the middle frame in evaluation.
- ``single`` (Singularity): one frame, random in training, the middle one in evaluation.
- ``contiguous``: T consecutive frames (every ``stride``-th), random start in training,
  centred in evaluation; a clip too short repeats its last frame.
"""

from __future__ import annotations

import hashlib

import numpy as np

# Separate streams per decision, so e.g. changing the crop never changes the sampled frames.
STREAM_FRAMES, STREAM_CAPTION, STREAM_AUGMENT = 1, 2, 3


def sample_rng(seed: int, epoch: int, key: str, stream: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, key, stream), never on global state."""
    key_hash = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed, epoch, key_hash, stream])


def segment_indices(num_frames: int, num_segments: int, *, train: bool, rng: np.random.Generator | None) -> np.ndarray:
    """One index per segment: segment i is [i*F/T, (i+1)*F/T); random in training, middle in eval."""
    if num_frames < 1:
        raise ValueError(f"clip has {num_frames} frames; need at least 1")
    starts = np.arange(num_segments) * (num_frames / num_segments)
    width = num_frames / num_segments
    offset = rng.random(num_segments) if train else np.full(num_segments, 0.5)
    idx = np.floor(starts + offset * width).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def contiguous_indices(num_frames: int, length: int, stride: int, *, train: bool, rng: np.random.Generator | None) -> np.ndarray:
    """``length`` frames ``stride`` apart; the start is random (train) or centred (eval)."""
    if num_frames < 1:
        raise ValueError(f"clip has {num_frames} frames; need at least 1")
    span = (length - 1) * stride + 1
    room = max(num_frames - span, 0)
    start = int(rng.integers(0, room + 1)) if train else room // 2
    idx = start + np.arange(length) * stride
    return np.minimum(idx, num_frames - 1).astype(np.int64)


def sample_frame_indices(
    num_frames: int, count: int, mode: str, *, train: bool, rng: np.random.Generator | None, stride: int = 1
) -> np.ndarray:
    """The sorted source frame indices to decode for one clip (int64, shape [T])."""
    if train and rng is None:
        raise ValueError("training sampling needs an rng (use sample_rng)")
    if mode == "segments":
        return segment_indices(num_frames, count, train=train, rng=rng)
    if mode == "single":
        return segment_indices(num_frames, 1, train=train, rng=rng)
    if mode == "contiguous":
        return contiguous_indices(num_frames, count, stride, train=train, rng=rng)
    raise ValueError(f"unknown sampling mode {mode!r}; use segments, single or contiguous")
