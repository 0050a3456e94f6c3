"""Video-text matching (VTM): does this caption describe this clip?

For every pair in the batch one negative caption per clip and one negative clip per caption are
drawn. Hard negatives (ALBEF) are sampled with probability softmax(similarity) over the
non-matching pairs, so confusable pairs are seen more often; positives (same clip key) are never
drawn. The fused text states of the positive and both negative sets go through one fusion pass;
the text encoder outputs are reused, never recomputed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sample_negatives(
    sim: torch.Tensor,
    positive: torch.Tensor,
    *,
    hard: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """sim [B, B'] similarity logits (row = query), positive bool [B, B'] -> (index [B] of one
    negative column per row, valid [B]: rows that have any negative at all). Sampling weights:
    softmax(sim) over the negatives (``hard``) or uniform; positives have weight 0."""
    weights = sim.float().softmax(dim=1) if hard else torch.ones_like(sim, dtype=torch.float)
    weights = weights.masked_fill(positive, 0.0)
    valid = weights.sum(dim=1) > 0
    # a row with no negative samples itself (uniform over everything) and is masked out later
    safe = torch.where(valid[:, None], weights + 1e-12 * ~positive, torch.ones_like(weights))
    index = torch.multinomial(safe, 1, generator=generator).squeeze(1)
    return index, valid


class VTMHead(nn.Module):
    """Match logit from the fused [CLS] state."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """fused [B, L, Dt] -> logit [B]."""
        return self.proj(fused[:, 0]).squeeze(-1)


def vtm_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over match logits [M], labels [M] in {0, 1}, weight [M] (0 = skip)."""
    loss = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    return (loss * weight).sum() / weight.sum().clamp_min(1)
