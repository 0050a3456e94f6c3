"""SMAUG with a trainable text adapter between the frozen MiniLM and the VTC text feature.

The default text side is all-MiniLM-L6-v2, frozen, read at its [CLS] token through one linear
layer. A caption and its order swap ("X, then Y" / "Y, then X") come out of it at cosine 0.994
(studies/order), and a linear map of two vectors that close cannot set them far apart without
also spreading every other caption. Training MiniLM's own top layer cost retrieval (its
pre-trained features drift faster than the video tower learns: docs/parts/trainer.md).

The adapter leaves MiniLM as it is and adds ``layers`` pre-norm transformer layers over its token
states, with their own learned position embedding, before the pooling. Self-attention over
tokens that know their place can tell which event comes first; the frozen features underneath
keep what the words mean. Each layer's two output projections start at zero, so at step 0 the
adapter is the identity and the model is the default model exactly; it departs from it only as
far as the loss asks.

Only the VTC text feature (``text_feature``) reads the adapter: VTM and MLM fuse MiniLM's states
as before. A subclass, as every study here: the default pipeline's code and locks stay as they
are. It adds parameters (``text_adapter.*``), so its checkpoints are evaluated with
``python -m studies.levers --text-adapter N --program evaluate -- ...``.
"""

from __future__ import annotations

import torch
from torch import nn

from train.model import SMAUG
from train.model.layers import Attention, Mlp


class AdapterLayer(nn.Module):
    """Pre-norm self-attention (padding masked) and MLP, both residual, both starting at zero."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        for last in (self.attn.proj, self.mlp[-1]):   # identity at initialisation
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], pos [1, L, D], keep bool [B, 1, 1, L] (True = real token) -> [B, L, D].
        The position term enters the attention's input only, never the residual stream, so
        with both output projections at zero the layer returns ``x`` exactly."""
        x = x + self.attn(self.norm1(x + pos), attn_mask=keep)[0]
        return x + self.mlp(self.norm2(x))


class TextAdapter(nn.Module):
    def __init__(self, dim: int, max_len: int, layers: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)   # no weight decay (trainer)
        self.layers = nn.ModuleList(AdapterLayer(dim, heads, mlp_ratio) for _ in range(layers))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, D] (the frozen tower's states), attention_mask [B, L] -> [B, L, D]."""
        keep = attention_mask.bool()[:, None, None, :]
        pos = self.pos_embed[:, : hidden.shape[1]]
        x = hidden
        for layer in self.layers:
            x = layer(x, pos, keep)
        return x


class TextAdapterSMAUG(SMAUG):
    """``layers`` > 0 (set by studies/levers.py before the model is built): the VTC text feature
    reads MiniLM's tokens through that many adapter layers, learning at ``lr_scale`` x the run's
    rate."""

    layers: int = 0
    lr_scale: float = 1.0

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        self.text_adapter = None
        if self.layers > 0:
            dim = self.text.hidden_size
            self.text_adapter = TextAdapter(dim, cfg.text.max_len, self.layers, cfg.fusion.heads,
                                            cfg.fusion.mlp_ratio)

    def lr_scales(self) -> dict[nn.Module, float]:
        scales = super().lr_scales()
        if self.text_adapter is not None and self.lr_scale != 1.0:
            scales[self.text_adapter] = self.lr_scale
        return scales

    def text_feature(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.text_adapter is not None:
            hidden = self.text_adapter(hidden, attention_mask)
        return super().text_feature(hidden, attention_mask)
