"""SMAUG with a frame-order head: the clip feature also reads its frames' summaries in time order.

The video tower's clip feature is its [CLS] token, a weighted average over the final tokens.
Averaging forgets order unless attention has learned to depend jointly on content and time, and
at initialisation it has not: a clip and its reversal give [CLS] outputs with cosine 0.99995.
The order objective's gradient through that average is a product of two near-zero terms, so
neither the order loss nor VTC moves it (studies/order/README.md: the loss stays at ln 2 for
hundreds of steps, with or without masking and sparsification).

The head gives order a linear path: the mean of each frame's final tokens, concatenated in time
order ([B, T x D]; a frame with no token left after masking and sparsification contributes
zeros), goes through one linear layer and is added to the [CLS] token. Reversing a clip permutes
the blocks of that vector, so a clip and its reversal differ from the first step, and learning
which way round matches a caption is a linear problem.

A subclass, not a change to train/model, as in studies/order. It adds parameters
(``frame_order.*``): evaluate its checkpoints with ``python -m studies.levers --program evaluate
--frame-order ...`` so the model is built with the head.
"""

from __future__ import annotations

import torch
from torch import nn

from train.model import SMAUG
from train.model.video_encoder import VideoEncoding


def frame_means(tokens: torch.Tensor, ids: torch.Tensor, tokens_per_frame: int, frames: int,
                slots: int) -> torch.Tensor:
    """tokens [B, n, D] (no [CLS]), ids [B, n] patch index (-1: a fused token) -> [B, slots, D]:
    the mean of each frame's tokens, frame f in slot f * slots // frames (zeros where none)."""
    b, n, d = tokens.shape
    real = ids >= 0
    slot = torch.where(real, (ids.clamp_min(0) // tokens_per_frame) * slots // frames, 0)
    sums = tokens.new_zeros(b, slots, d).scatter_add_(1, slot[..., None].expand(-1, -1, d),
                                                      tokens * real[..., None].to(tokens.dtype))
    counts = tokens.new_zeros(b, slots).scatter_add_(1, slot, real.to(tokens.dtype))
    return sums / counts.clamp_min(1.0)[..., None]


class FrameOrderSMAUG(SMAUG):
    """``enabled`` (set by studies/levers.py before the model is built): add the frame-order head."""

    enabled: bool = False

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        self.frame_order = None
        if self.enabled:
            self.slots = cfg.video.num_frames // cfg.video.tubelet
            self.frame_order = nn.Linear(self.slots * cfg.video.width, cfg.video.width)

    def _encode_video(self, video, *, mask, sparsify=True, generator=None, trace=False) -> VideoEncoding:
        enc = super()._encode_video(video, mask=mask, sparsify=sparsify, generator=generator, trace=trace)
        if self.frame_order is None:
            return enc
        frames, gh, gw = enc.grid
        summary = frame_means(enc.tokens[:, 1:], enc.ids, gh * gw, frames, self.slots)
        cls = enc.tokens[:, :1] + self.frame_order(summary.flatten(1))[:, None]
        enc.tokens = torch.cat([cls, enc.tokens[:, 1:]], dim=1)
        return enc
