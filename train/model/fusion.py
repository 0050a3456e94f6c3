"""Cross-modal fusion: text tokens attend to the video tokens.

Each layer is text self-attention, cross-attention from text (queries) to the video tokens
(keys/values, CLS and any fused token included), and an MLP. VTM, MLM and the downstream
heads (retrieval re-ranking, QA) all read the fused text states.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.config import ConfigError

from .config import FusionConfig
from .layers import CrossBlock


class FusionEncoder(nn.Module):
    def __init__(self, cfg: FusionConfig, text_dim: int, video_dim: int) -> None:
        super().__init__()
        if text_dim % cfg.heads:
            raise ConfigError(f"model.fusion.heads: {cfg.heads} does not divide the text width {text_dim}")
        self.layers = nn.ModuleList(
            CrossBlock(text_dim, video_dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(text_dim, eps=1e-6)

    def forward(
        self, text: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor
    ) -> torch.Tensor:
        """text [B, L, Dt], attention_mask [B, L], video [B, N, Dv] -> fused [B, L, Dt]."""
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L] True = real token
        for layer in self.layers:
            text = layer(text, keep, video)
        return self.norm(text)
