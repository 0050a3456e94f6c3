"""SMAUG whose VTC video feature adds a signed temporal moment of the tokens: late minus early.

The default VTC video feature is the tower's [CLS] token. In every run so far the tower learned
to be close to a bag of frames (studies/order: shuffling a clip's frames moves its feature by a
cosine of 0.9996), so a clip and the same frames in another order give one feature, and no
caption can prefer "X, then Y" over "Y, then X" for it.

Here the feature is ``proj([CLS]) + moment_proj(m)`` with

    m = late - early,   late = sum_{tau_i > 0} tau_i x_i / sum_{tau_i > 0} tau_i,
                        early = sum_{tau_i < 0} |tau_i| x_i / sum_{tau_i < 0} |tau_i|,
    tau_i = frame(i) / (T' - 1) - 1/2,

over the final tokens ``x_i`` (fused tokens, which belong to no frame, get tau = 0): the mean of
the late tokens minus the mean of the early ones, each weighted by how late or early a token
is. Two separate means, because random masking leaves unequal counts per frame, and one sum
over both halves would then carry the clip's mean content whatever its order. Played backwards, every tau changes sign and so does ``m``: order reaches the feature by
construction, at the cost of one D x E matrix, instead of having to be learned by the
attention. Any mix of masking and sparsification leaves it defined (it is a weighted mean of
whichever tokens survived). ``moment_proj`` starts at zero, so at step 0 this is the default
model exactly.

A subclass, as every study here: the default pipeline's code and locks stay as they are. It adds
parameters (``moment_proj``), so its checkpoints are evaluated with
``python -m studies.levers --order-pooling --program evaluate -- ...``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.model import SMAUG


def temporal_moment(tokens: torch.Tensor, ids: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """tokens [B, 1+n, D] (CLS first), ids [B, n] (patch index, -1 = fused) -> m [B, D].

    Zero when the surviving tokens do not span both halves of the clip: no order to read."""
    frames, gh, gw = grid
    x = tokens[:, 1:]
    if x.shape[1] != ids.shape[1]:
        raise ValueError(f"{x.shape[1]} tokens after CLS but {ids.shape[1]} token ids")
    if frames < 2:
        return x.new_zeros(x.shape[0], x.shape[-1])
    frame = torch.div(ids, gh * gw, rounding_mode="floor").to(x.dtype)
    tau = torch.where(ids >= 0, frame / (frames - 1) - 0.5, torch.zeros_like(frame))     # [B, n]
    late, early = tau.clamp_min(0), (-tau).clamp_min(0)                                  # [B, n]
    late_w, early_w = late.sum(1, keepdim=True), early.sum(1, keepdim=True)
    both = ((late_w > 0) & (early_w > 0)).to(x.dtype)
    m = ((late[..., None] * x).sum(1) / late_w.clamp_min(1e-6)
         - (early[..., None] * x).sum(1) / early_w.clamp_min(1e-6))
    return m * both


class OrderPoolingSMAUG(SMAUG):
    """``enabled`` (set by studies/levers.py before the model is built): the video feature adds
    ``moment_proj`` of the late-minus-early moment of the last encoded clip's tokens."""

    enabled: bool = False

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        self.moment_proj = None
        self._last: tuple[torch.Tensor, tuple[int, int, int]] | None = None
        if self.enabled:
            self.moment_proj = nn.Linear(cfg.video.width, self.video_proj.out_features)
            nn.init.zeros_(self.moment_proj.weight)
            nn.init.zeros_(self.moment_proj.bias)

    def _encode_video(self, video, *, mask, sparsify=True, generator=None, trace=False):
        enc = super()._encode_video(video, mask=mask, sparsify=sparsify, generator=generator, trace=trace)
        # video_feature receives tokens only; every caller passes the tokens of the encoding
        # just made, so its token ids are kept for it here (and checked against the tokens there)
        self._last = (enc.ids, enc.grid)
        return enc

    def video_feature(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.moment_proj is None:
            return super().video_feature(tokens)
        if self._last is None or self._last[0].shape[0] != tokens.shape[0]:
            raise RuntimeError("video_feature needs the token ids of the clip just encoded")
        ids, grid = self._last
        feat = self.video_proj(tokens[:, 0]) + self.moment_proj(temporal_moment(tokens, ids, grid))
        return F.normalize(feat, dim=-1)
