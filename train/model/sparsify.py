"""Space-time token sparsification: keep the tokens and frames the CLS token attends to.

At the ViT layers listed in ``sparsify.layers`` the encoder scores every token by the CLS
token's attention to it (mean over heads, computed from that layer's q and k in
:func:`train.model.layers.cls_attention_row`) and then

1. :func:`temporal_sparsify` ranks frames by the mean score of their tokens and keeps whole
   frames, best first, until a per-sample token budget (``temporal_keep`` of the tokens) is
   spent. With random masking frames hold different numbers of visible tokens, so the budget
   is fixed in tokens (every sample keeps the same count, no padding): the last frame taken may
   be cut to its best tokens. With tube masking or no masking and ``temporal_keep * T`` an
   integer this keeps exactly that many whole frames.
2. :func:`spatial_sparsify` keeps the top ``spatial_keep`` of the remaining tokens and fuses
   the rest into one token, their attention-weighted mean (EViT-style: no information is
   thrown away outright).

Every token carries its patch index (``ids``, ``-1`` for a fused token), so masking and
sparsification can be undone for MVM and drawn in the picture (``visualize.py``).
"""

from __future__ import annotations

import math

import torch

FUSED = -1  # id of a fused token (it stands for several patches)

# The warm-up moves the keep rates in this many equal stages rather than every step: each keep
# rate gives other token counts, i.e. other tensor shapes, and under torch.compile every new
# shape (and every new Python float it guards on) is a recompile; dynamo gives up compiling a
# frame after 8 (its recompile limit) and runs it eagerly for the rest of the run. 4 stages +
# the final rate stay under that limit; on CPU without compile the stages cost nothing either.
WARMUP_STAGES = 4


def keep_schedule(final: float, step: int, warmup_steps: int) -> float:
    """Keep rate at pre-training ``step``: EViT's cosine from 1.0 (keep all) down to ``final``
    over ``warmup_steps``, rounded up to :data:`WARMUP_STAGES` equal stages; ``final`` from then on.

    Why: on a randomly initialised ViT the CLS attention that ranks the tokens is noise, so
    sparsifying at full strength from step 0 drops tokens at random; EViT starts from trained
    weights and still warms the keep rate up (1.0 for 10 epochs, cosine to the target over 100).
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return final
    left = 0.5 * (1.0 + math.cos(math.pi * step / warmup_steps))   # 1 at step 0 -> 0 at the end
    left = math.ceil(left * WARMUP_STAGES) / WARMUP_STAGES
    return final + (1.0 - final) * left


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # x [B, n, ...], idx [B, k] -> [B, k, ...]
    if x.ndim == 2:
        return x.gather(1, idx)
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))


def spatial_sparsify(x: torch.Tensor, scores: torch.Tensor, ids: torch.Tensor, keep: float):
    """Keep the top-``keep`` tokens by score, fuse the others into one.

    x [B, 1+n, D] (CLS first), scores [B, n], ids [B, n] ->
    x' [B, 1+k+1, D] (CLS, kept tokens best first, fused token), scores' [B, k+1], ids' [B, k+1]
    (fused id = -1), kept [B, k] (positions of the kept tokens in the input), with
    k = ceil(keep * n); fused = sum(score_i * x_i) / sum(score_i) over the dropped tokens.
    """
    n = scores.shape[1]
    k = min(n, max(1, math.ceil(keep * n)))
    order = scores.argsort(dim=1, descending=True)
    keep_idx, drop_idx = order[:, :k], order[:, k:]
    if drop_idx.shape[1] == 0:
        return x, scores, ids, keep_idx
    tokens = x[:, 1:]
    w = _gather(scores, drop_idx)                                   # [B, n-k]
    fused = (w[..., None] * _gather(tokens, drop_idx)).sum(1)       # [B, D]
    fused = fused / w.sum(1, keepdim=True).clamp_min(1e-12)
    x = torch.cat([x[:, :1], _gather(tokens, keep_idx), fused[:, None]], dim=1)
    fused_score = w.sum(1, keepdim=True)                            # the attention it stands for
    scores = torch.cat([_gather(scores, keep_idx), fused_score], dim=1)
    ids = torch.cat([_gather(ids, keep_idx), ids.new_full((ids.shape[0], 1), FUSED)], dim=1)
    return x, scores, ids, keep_idx


def frame_scores(scores: torch.Tensor, frame: torch.Tensor, frames: int) -> torch.Tensor:
    """Mean token score per frame: scores, frame [B, n] (frame id per token, -1 = none) ->
    [B, frames]; frames without tokens get -inf."""
    b = scores.shape[0]
    valid = frame >= 0
    slot = torch.where(valid, frame, torch.full_like(frame, frames))  # dump slot for non-frames
    total = scores.new_zeros(b, frames + 1).scatter_add_(1, slot, scores * valid)
    count = scores.new_zeros(b, frames + 1).scatter_add_(1, slot, valid.to(scores.dtype))
    mean = total[:, :frames] / count[:, :frames].clamp_min(1)
    return mean.masked_fill(count[:, :frames] == 0, float("-inf"))


def temporal_sparsify(
    x: torch.Tensor,
    scores: torch.Tensor,
    ids: torch.Tensor,
    keep: float,
    *,
    tokens_per_frame: int,
    frames: int,
    n_fused: int = 0,
):
    """Keep the best frames (by mean CLS attention of their tokens) within a token budget.

    x [B, 1+n, D] (CLS first), scores [B, n], ids [B, n] (patch index, -1 for fused tokens) ->
    x' [B, 1+m, D], scores' [B, m], ids' [B, m], kept [B, m] (positions kept) with
    m = fused tokens + ceil(keep * real tokens). Fused tokens always stay (they belong to no
    frame); real tokens are taken frame by frame in order of frame score, and within a frame
    in order of token score. ``n_fused``: how many of the tokens are fused (the same in every
    sample; the caller counts them, so no count is read back from the device).
    """
    real = ids >= 0
    n_real = ids.shape[1] - n_fused
    budget = min(n_real, max(1, math.ceil(keep * n_real)))
    frame = torch.where(real, ids // tokens_per_frame, torch.full_like(ids, -1))   # [B, n]
    fscore = frame_scores(scores, frame, frames)                                    # [B, T]
    frame_rank = fscore.argsort(dim=1, descending=True).argsort(dim=1)             # 0 = best
    tok_rank = torch.where(real, frame_rank.gather(1, frame.clamp_min(0)),
                           torch.full_like(frame, -1)).float()                     # fused first
    by_score = scores.argsort(dim=1, descending=True)                   # secondary key
    by_frame = _gather(tok_rank, by_score).argsort(dim=1, stable=True)  # primary key, stable
    order = by_score.gather(1, by_frame)
    kept = order[:, : n_fused + budget]
    x = torch.cat([x[:, :1], _gather(x[:, 1:], kept)], dim=1)
    return x, _gather(scores, kept), _gather(ids, kept), kept
