"""SMAUG whose patch embedding also reads each patch's change since the previous frame.

Every event on the built-in benchmark is a small object changing colour, size or place on a
static background: between a clip's first and last sampled frame a median of 4 of its 36 patches
change (studies/frame_order). A [CLS] average over tokens that each show one frame is dominated
by the 32 static patches, and with 75% random masking a changing patch is visible in both of two
frames with probability 1/16, so the tower almost never sees a change as a change.

A change token makes the change part of the input, as TSN's RGB-difference stream and TDN's
temporal difference module do: the patch embedding reads ``[x_t, x_t - x_{t-1}]`` (zeros for the
first frame) instead of ``x_t``. The difference is taken on the whole clip before masking, so a
visible token carries its change even when the same patch of the frame before is masked. A
static patch's change half is zero, so it adds nothing there; a reversed clip's differences
change sign, so direction reaches the tower at the first layer.

MVM still reconstructs pixels (its targets cut the clip with ``patches.patchify``, which this
leaves alone). A subclass, as every study here, so the default pipeline's code and locks stay as
they are. It adds parameters (a wider ``video.patch_embed``): evaluate its checkpoints with
``python -m studies.levers --change-tokens --program evaluate -- ...``.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

import train.model.video_encoder as video_encoder
from train.model import SMAUG
from train.model.patches import patchify


def frame_change(video: torch.Tensor) -> torch.Tensor:
    """video [B, T, C, H, W] -> [B, T, C, H, W]: each frame minus the one before (frame 0: zeros)."""
    return torch.cat([torch.zeros_like(video[:, :1]), video[:, 1:] - video[:, :-1]], dim=1)


def patchify_with_change(video: torch.Tensor, patch: int, tubelet: int = 1) -> torch.Tensor:
    """``patchify`` with each patch's change appended: [B, N, F] -> [B, N, 2F]."""
    return torch.cat([patchify(video, patch, tubelet), patchify(frame_change(video), patch, tubelet)],
                     dim=-1)


@contextmanager
def _change_patches():
    # The tower cuts the clip by calling its module's ``patchify``; swapping that one name for
    # the length of a forward gives it change tokens without a second copy of the forward.
    plain = video_encoder.patchify
    video_encoder.patchify = patchify_with_change
    try:
        yield
    finally:
        video_encoder.patchify = plain


class ChangeTokenVideoEncoder(video_encoder.VideoEncoder):
    def __init__(self, cfg, sparsify=None) -> None:
        super().__init__(cfg, sparsify)
        self.patch_embed = nn.Linear(2 * self.patch_embed.in_features, cfg.width)

    def forward(self, video: torch.Tensor, **kwargs):
        with _change_patches():
            return super().forward(video, **kwargs)


class ChangeTokenSMAUG(SMAUG):
    """``enabled`` (set by studies/levers.py before the model is built): change tokens."""

    enabled: bool = False

    def __init__(self, cfg, **kwargs) -> None:
        if self.enabled and cfg.video.init is not None:
            raise ValueError("change tokens widen the patch embedding, so the tower starts from scratch: "
                             f"model.video.init must be null, got {cfg.video.init!r}")
        super().__init__(cfg, **kwargs)
        if self.enabled:
            self.video = ChangeTokenVideoEncoder(cfg.video, cfg.sparsify)
