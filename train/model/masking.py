"""Masking of both modalities: video patches (random or tube) and text tokens (BERT MLM).

Only the kept video tokens enter the encoder, so the saving is real (MAE): masked patches are
never embedded, attended or passed through an MLP.
"""

from __future__ import annotations

import torch


def _split_by_order(x: torch.Tensor, ids_shuffle: torch.Tensor, len_keep: int):
    # x [B, N, F], ids_shuffle [B, N] (kept first) -> kept [B, K, F], mask [B, N], ids_restore [B, N]
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
    mask = torch.ones(x.shape[:2], device=x.device)
    mask[:, :len_keep] = 0
    mask = mask.gather(1, ids_restore)  # back to patch order: 1 = masked
    return kept, mask, ids_restore


def kept_ids(ids_restore: torch.Tensor, len_keep: int) -> torch.Tensor:
    """Patch indices of the ``len_keep`` kept tokens, in the kept tokens' order: [B, K].

    ``len_keep`` is the kept tensor's length (known from its shape, so nothing is read back
    from the device)."""
    return ids_restore.argsort(dim=1)[:, :len_keep]


def random_masking(x: torch.Tensor, ratio: float, generator: torch.Generator | None = None):
    """Per-sample random masking (MAE).

    x [B, N, F] -> kept [B, K, F] with K = int(N * (1 - ratio)), mask [B, N] (1 = masked, in
    patch order), ids_restore [B, N] (undoes the shuffle: kept + mask tokens -> patch order).
    """
    b, n, _ = x.shape
    len_keep = max(1, int(n * (1 - ratio)))
    noise = torch.rand(b, n, device=x.device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)  # small noise first = kept
    return _split_by_order(x, ids_shuffle, len_keep)


def tube_masking(
    x: torch.Tensor, ratio: float, frames: int, generator: torch.Generator | None = None
):
    """Tube masking (SimVTP / VideoMAE): one spatial mask per sample shared by every frame.

    x [B, frames*S, F] (time-major) -> kept [B, frames*Ks, F] with Ks = int(S * (1 - ratio)),
    mask [B, frames*S], ids_restore [B, frames*S] as in :func:`random_masking`.
    """
    b, n, _ = x.shape
    if n % frames:
        raise ValueError(f"{n} tokens do not split into {frames} frames")
    s = n // frames
    keep_s = max(1, int(s * (1 - ratio)))
    ids_s = torch.rand(b, s, device=x.device, generator=generator).argsort(dim=1)  # [B, S]
    offsets = torch.arange(frames, device=x.device)[None, :, None] * s               # [1, T, 1]
    keep = (ids_s[:, None, :keep_s] + offsets).reshape(b, -1)                         # [B, T*Ks]
    drop = (ids_s[:, None, keep_s:] + offsets).reshape(b, -1)                         # [B, T*(S-Ks)]
    return _split_by_order(x, torch.cat([keep, drop], dim=1), keep.shape[1])


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    ratio: float,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: list[int] | tuple[int, ...],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masked-language-model corruption.

    Each real, non-special token is selected with probability ``ratio``; a selected token
    becomes [MASK] 80% of the time, a random word 10%, itself 10%. [CLS]/[SEP]/[PAD] (and any
    padding position) are never selected.
    input_ids, attention_mask [B, L] -> (corrupted ids [B, L], labels [B, L]: the original id
    at selected positions, -100 elsewhere).
    """
    device = input_ids.device
    candidates = attention_mask.bool()
    for sid in special_ids:
        candidates &= input_ids != sid
    u = torch.rand(input_ids.shape, device=device, generator=generator)
    selected = candidates & (u < ratio)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, device=device, generator=generator)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_words = torch.randint(vocab_size, input_ids.shape, device=device, generator=generator)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    corrupted = torch.where(to_random, random_words, corrupted)
    return corrupted, labels
