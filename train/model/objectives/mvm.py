"""Masked video modelling (MVM): a light MAE-style decoder reconstructs the masked patches.

Decoder input: the encoder's *final* tokens projected to the decoder width and put back at
their patch positions; every other position (masked before the encoder, or dropped by
sparsification) holds the learned mask token; CLS and any fused tokens ride along as extra
context. Positions come from each token's patch id, the general form of MAE's ``ids_restore``
unshuffle (sparsification reorders tokens, so the id of each token is tracked instead).

Why decode from the final (sparsified) encoder output rather than from the tokens before
sparsification: the decoder then sees what the encoder actually kept, so the reconstruction
gradient reaches every encoder layer, and no second pass is needed. The loss is taken on the
patches masked before the encoder only (MAE): the encoder never saw them. Patches dropped by
sparsification were seen by the early layers, so they are decoded but not scored.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import MVMConfig, VideoConfig
from ..layers import Block
from ..patches import SeparablePosEmbed
from ..sparsify import FUSED
from ..video_encoder import VideoEncoding
from .targets import target_dim


class MVMDecoder(nn.Module):
    def __init__(self, cfg: MVMConfig, video: VideoConfig) -> None:
        super().__init__()
        dim = cfg.decoder_width
        self.embed = nn.Linear(video.width, dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = SeparablePosEmbed(video.grid, video.num_frames // video.tubelet, dim)
        self.blocks = nn.ModuleList(Block(dim, cfg.decoder_heads, 4.0) for _ in range(cfg.decoder_depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, target_dim(cfg.target, video.patch_size, video.tubelet))

    def forward(self, enc: VideoEncoding, positions: torch.Tensor | None = None) -> torch.Tensor:
        """enc.tokens [B, 1+n, D], enc.ids [B, n] -> prediction [B, N, F] for every patch, or
        [B, M, F] for the patch indices ``positions`` [B, M] only (the head is then applied to
        the scored patches alone)."""
        x = self.embed(enc.tokens)                              # [B, 1+n, Dd]
        cls, tokens = x[:, :1], x[:, 1:]
        b, n_all = tokens.shape[0], enc.num_patches
        real = enc.ids != FUSED
        # scatter real tokens to their positions; fused tokens go to a spare slot n_all
        slot = torch.where(real, enc.ids, torch.full_like(enc.ids, n_all))
        grid = self.mask_token.to(x.dtype).expand(b, n_all + 1, -1).clone()  # (autocast: bf16)
        grid = grid.scatter(1, slot[..., None].expand(-1, -1, x.shape[-1]), tokens)
        grid = grid[:, :n_all] + self.pos(*enc.grid)
        # the fused tokens (the same count in every sample), found by a stable sort, not by a
        # boolean index, whose output size the host would have to wait for
        first = real.to(torch.uint8).argsort(dim=1, stable=True)[:, : enc.n_fused]
        fused = tokens.gather(1, first[..., None].expand(-1, -1, x.shape[-1]))
        h = torch.cat([cls, grid, fused], dim=1)
        for block in self.blocks:
            h, _ = block(h)
        h = h[:, 1 : 1 + n_all]
        if positions is not None:
            h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))
        return self.head(self.norm(h))


def masked_positions(mask: torch.Tensor, m: int) -> torch.Tensor:
    """mask [B, N] (1 = masked, ``m`` per sample: known from the shapes, never read from the
    device) -> patch indices [B, M] of the masked ones."""
    return mask.argsort(dim=1, descending=True, stable=True)[:, :m]


def mvm_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """pred, target [B, N, F]; mask [B, N] (1 = masked) -> mean squared error on masked patches
    (``mask=None``: pred and target already hold the masked patches only)."""
    if mask is None:
        return ((pred - target) ** 2).mean()
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)
