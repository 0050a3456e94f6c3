"""Masked language modelling (MLM) through the fusion: masked words are predicted from the
remaining words *and* the video tokens.

The head is BERT's (transform dense + GELU + LayerNorm, then a decoder tied to the word
embeddings plus a bias), initialised from the checkpoint's ``cls.predictions.*`` tensors when
the checkpoint has them (all-MiniLM-L6-v2 does not: then transform and bias start fresh while
the decoder reuses the word embedding matrix). When the embeddings are frozen
(``text.freeze_layers > 0``) the decoder uses them frozen too. Logits are computed only at the
masked positions: a full [B, L, vocab] projection would cost more than the rest of the text tower.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class MLMHead(nn.Module):
    def __init__(self, dim: int, word_embeddings: nn.Embedding, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))
        self._embeddings = [word_embeddings]  # tied, not registered twice (list hides it)

    def load_from_checkpoint(self, folder: Path) -> bool:
        """Copy BERT's MLM head tensors from ``folder/model.safetensors`` if present."""
        file = folder / "model.safetensors"
        if not file.exists():
            return False
        from safetensors import safe_open

        names = {
            "cls.predictions.transform.dense.weight": self.dense.weight,
            "cls.predictions.transform.dense.bias": self.dense.bias,
            "cls.predictions.transform.LayerNorm.weight": self.norm.weight,
            "cls.predictions.transform.LayerNorm.bias": self.norm.bias,
            "cls.predictions.bias": self.bias,
        }
        with safe_open(str(file), "pt") as f:
            if not all(k in f.keys() for k in names):
                return False
            with torch.no_grad():
                for key, param in names.items():
                    param.copy_(f.get_tensor(key))
        return True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [M, Dt] (masked positions only) -> logits [M, vocab]."""
        h = self.norm(F.gelu(self.dense(hidden)))
        weight = self._embeddings[0].weight
        if not weight.requires_grad:
            weight = weight.detach()
        return h @ weight.t() + self.bias


def mlm_loss(head: MLMHead, fused: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fused [B, L, Dt], labels [B, L] (-100 = not masked) -> mean CE over masked positions."""
    where = labels != -100
    if not where.any():
        # nothing masked in this batch: a zero that still touches the head (keeps DDP happy)
        return fused.sum() * 0.0 + sum(p.sum() for p in head.parameters()) * 0.0
    logits = head(fused[where])
    return F.cross_entropy(logits, labels[where])
