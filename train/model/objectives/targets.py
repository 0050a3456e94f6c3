"""Reconstruction targets for masked video modelling, one function per target.

A target maps the (normalised) clip to one vector per space-time patch, in the encoder's token
order: ``fn(video [B, T, 3, H, W], patch, tubelet, norm_pix, positions=None) -> [B, N, F]``, or
``[B, M, F]`` for the patch indices ``positions`` [B, M] only (the masked ones: cheaper). Add a target by writing such a
function and registering it in :data:`TARGETS` (``mvm.target`` picks it).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..patches import patchify


def _select(x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    if positions is None:
        return x
    return x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))


def pixel_target(
    video: torch.Tensor, patch: int, tubelet: int, norm_pix: bool = True,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw pixels of each patch, optionally normalised by the patch's own mean and std (MAE)."""
    target = _select(patchify(video, patch, tubelet), positions)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    return target


HOG_BINS = 9


def hog_cell(patch: int) -> int:
    return 8 if patch % 8 == 0 else patch


def hog_target(
    video: torch.Tensor, patch: int, tubelet: int, norm_pix: bool = True,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Histograms of oriented gradients (MaskFeat): per colour channel, 9 unsigned orientation
    bins, magnitude-weighted, pooled over 8x8 cells; each patch's cells concatenated and
    L2-normalised. ``norm_pix`` is unused (HOG is normalised by construction)."""
    b, t, c, h, w = video.shape
    frames = video.reshape(b * t * c, 1, h, w)
    kx = video.new_tensor([[-1.0, 0.0, 1.0]]).reshape(1, 1, 1, 3)
    gx = F.conv2d(F.pad(frames, (1, 1, 0, 0), mode="replicate"), kx)
    gy = F.conv2d(F.pad(frames, (0, 0, 1, 1), mode="replicate"), kx.transpose(2, 3))
    magnitude = (gx**2 + gy**2).sqrt()
    angle = torch.atan2(gy, gx) % math.pi                                   # unsigned, [0, pi)
    bins = (angle / math.pi * HOG_BINS).long().clamp_(max=HOG_BINS - 1)
    hist = torch.zeros(b * t * c, HOG_BINS, h, w, dtype=video.dtype, device=video.device)
    hist.scatter_(1, bins, magnitude)                                       # one bin per pixel
    cell = hog_cell(patch)
    hist = F.avg_pool2d(hist, cell)                                         # [BTC, 9, h/cell, w/cell]
    per = patch // cell
    gh, gw = h // patch, w // patch
    hist = hist.reshape(b, t // tubelet, tubelet, c, HOG_BINS, gh, per, gw, per)
    hist = hist.permute(0, 1, 5, 7, 2, 3, 4, 6, 8)       # [B, T', gh, gw, tubelet, C, 9, per, per]
    hist = hist.reshape(b, (t // tubelet) * gh * gw, -1)
    return _select(F.normalize(hist, dim=-1), positions)


def target_dim(name: str, patch: int, tubelet: int) -> int:
    if name == "pixels":
        return tubelet * patch * patch * 3
    if name == "hog":
        return tubelet * 3 * HOG_BINS * (patch // hog_cell(patch)) ** 2
    raise ValueError(f"unknown MVM target {name!r} (known: {', '.join(TARGETS)})")


TARGETS: dict[str, Callable[..., torch.Tensor]] = {"pixels": pixel_target, "hog": hog_target}
