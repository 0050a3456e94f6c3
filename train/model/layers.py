"""Transformer building blocks shared by the video encoder, the MVM decoder and the fusion.

All attention goes through ``torch.nn.functional.scaled_dot_product_attention`` (flash /
memory-efficient kernels where available). SDPA returns no weights, so when a sparsification
layer needs the CLS token's attention row, :class:`Attention` computes just that row from the
same q and k (``[B, H, 1, N]``: cheap next to the full ``[B, H, N, N]`` map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float, act: str = "gelu") -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), ACTIVATIONS[act](), nn.Linear(hidden, dim))


def cls_attention_row(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Attention of the CLS query (position 0) over the other tokens, mean over heads.

    q, k: [B, H, N, d] (N includes CLS at 0) -> [B, N-1] = mean_h softmax(q_0 k^T / sqrt(d))[1:]
    """
    scale = q.shape[-1] ** -0.5
    logits = (q[:, :, :1] * scale) @ k.transpose(-2, -1)   # [B, H, 1, N]
    attn = logits.softmax(dim=-1)[:, :, 0, 1:]             # [B, H, N-1] (CLS->CLS left out)
    return attn.mean(dim=1)


class Attention(nn.Module):
    """Multi-head self- or cross-attention through SDPA."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.self_attention = kv_dim is None
        if self.self_attention:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(kv_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)  # [B, H, N, d]

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        return_cls_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, N, D]; context: [B, M, kv_dim] for cross-attention; attn_mask: bool [B, 1, 1, M]
        (True = attend). Returns (out [B, N, D], CLS attention [B, N-1] or None)."""
        if self.self_attention:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        cls_attn = cls_attention_row(q, k) if return_cls_attention else None
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.proj(out), cls_attn


class Block(nn.Module):
    """Pre-norm ViT block; optionally also returns the CLS attention row for sparsification.

    ``act`` and ``eps`` exist so pretrained towers (CLIP: quick_gelu, eps 1e-5) run as trained.
    """

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, drop_path: float = 0.0,
        act: str = "gelu", eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_ratio, act)
        self.drop_path = DropPath(drop_path)

    def forward(
        self, x: torch.Tensor, return_cls_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, cls_attn = self.attn(self.norm1(x), return_cls_attention=return_cls_attention)
        x = x + self.drop_path(h)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, cls_attn


class CrossBlock(nn.Module):
    """Fusion layer: text self-attention, cross-attention from text to video, MLP (pre-norm)."""

    def __init__(self, dim: int, kv_dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.norm_ctx = nn.LayerNorm(kv_dim, eps=1e-6)
        self.cross_attn = Attention(dim, heads, kv_dim=kv_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, text_mask: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """x: [B, L, Dt] text; text_mask: bool [B, 1, 1, L] (True = real token); video: [B, N, Dv]."""
        x = x + self.self_attn(self.norm1(x), attn_mask=text_mask)[0]
        x = x + self.cross_attn(self.norm2(x), context=self.norm_ctx(video))[0]
        return x + self.mlp(self.norm3(x))


# --------------------------------------------------------------------------- gradient checkpointing


class _Recompute:
    """Put in front of a module's class by :func:`set_grad_checkpointing`: ``forward`` keeps no
    activations and is run again in backward (``torch.utils.checkpoint``, non-reentrant, which
    takes keyword arguments and tuple outputs with ``None`` in them, such as a :class:`Block`'s
    ``(x, cls_attention)``, and replays the RNG state, so dropout / DropPath draw the same)."""

    def forward(self, *args, **kwargs):
        if self.training and torch.is_grad_enabled():
            return checkpoint(super().forward, *args, use_reentrant=False, **kwargs)
        return super().forward(*args, **kwargs)


_RECOMPUTE_CLASSES: dict[type, type] = {}


def _recompute_class(cls: type) -> type:
    if cls not in _RECOMPUTE_CLASSES:
        _RECOMPUTE_CLASSES[cls] = type(cls.__name__, (_Recompute, cls), {"__module__": cls.__module__})
    return _RECOMPUTE_CLASSES[cls]


def checkpoint_targets(model: nn.Module) -> list[nn.Module]:
    """The blocks :func:`set_grad_checkpointing` recomputes: every :class:`Block` (video tower,
    MVM decoder), every :class:`CrossBlock` (fusion) and the trainable layers of a Hugging Face
    encoder (``<model>.encoder.layer``, the BERT text tower; frozen ones run under no_grad and
    keep no activations anyway)."""
    targets: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, (Block, CrossBlock)):
            targets.append(m)
        elif hasattr(m, "config") and isinstance(getattr(getattr(m, "encoder", None), "layer", None),
                                                   nn.ModuleList):
            targets += [layer for layer in m.encoder.layer
                        if any(p.requires_grad for p in layer.parameters())]
    return targets


def set_grad_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Recompute the transformer blocks of ``model`` in backward (or stop doing so).

    The blocks' classes are swapped for a subclass that checkpoints ``forward``, so no call site
    changes and the state dict keys stay the same (checkpoints load either way). Returns the
    number of blocks now recomputed.
    """
    count = 0
    for m in checkpoint_targets(model):
        cls = type(m)
        base = cls.__bases__[1] if issubclass(cls, _Recompute) else cls
        m.__class__ = _recompute_class(base) if enabled else base
        count += enabled
    return count
