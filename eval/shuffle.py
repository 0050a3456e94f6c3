"""HiTeA's shuffle test: how much does a score depend on the order of the frames?

Each evaluation can be run a second time with the frames of every clip permuted; the drop
(``normal - shuffled``) measures temporal reliance. A model that ignores time (mean-pooled
frame features) shows no drop; a model that reads motion does.

The permutation is fixed per clip: it is drawn from a generator seeded by the evaluation
seed and the clip's key (a stable hash, not Python's salted ``hash``), so reruns, batch
sizes and the order of the shards do not change it. It is never the identity (for T > 1),
otherwise some clips would silently escape the test.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch


def clip_permutation(key: str, num_frames: int, seed: int) -> torch.Tensor:
    """The fixed frame order used for clip ``key``: a non-identity permutation of T frames."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    identity = torch.arange(num_frames)
    while True:
        perm = torch.randperm(num_frames, generator=gen)
        if num_frames == 1 or not torch.equal(perm, identity):
            return perm


def shuffle_frames(video: torch.Tensor, keys: Sequence[str], seed: int) -> torch.Tensor:
    """Permute the frames of each clip. video: [B, T, C, H, W] -> same shape, new tensor."""
    if video.dim() < 2 or video.shape[0] != len(keys):
        raise ValueError(f"video {tuple(video.shape)} does not match {len(keys)} keys")
    num_frames = video.shape[1]
    perms = torch.stack([clip_permutation(k, num_frames, seed) for k in keys])  # [B, T]
    index = perms.view(*perms.shape, *([1] * (video.dim() - 2))).expand_as(video).to(video.device)
    return torch.gather(video, 1, index)


NOT_SCORES = ("num_", "chance", "in_vocab", "per_type_count", "frames")


def shuffle_drop(normal: dict, shuffled: dict) -> dict:
    """``normal - shuffled`` for every score the two results share (same nesting); counts
    and chance levels, which shuffling cannot change, are left out."""
    out = {}
    for name, value in normal.items():
        other = shuffled.get(name)
        if isinstance(value, dict) and isinstance(other, dict):
            sub = shuffle_drop(value, other)
            if sub:
                out[name] = sub
        elif isinstance(value, (int, float)) and isinstance(other, (int, float)) and not isinstance(value, bool):
            if not name.startswith(NOT_SCORES):
                out[name] = float(value) - float(other)
    return out
