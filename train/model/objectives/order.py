"""Temporal-order contrast: a clip played in another order is a negative for its own caption.

Contrastive video-text pre-training on its own never rewards reading frame order: the same
frames shuffled are as good a match for "X, then Y" as the clip itself, and HiTeA's shuffle test
finds exactly that (no drop). Here a share of each batch is encoded a second time with its
frames perturbed in time, and the caption must prefer the real clip: a two-way softmax over
(clip, perturbed clip) at the VTC temperature, in the spirit of the temporal negatives of
HiTeA and of "Test of Time" (reversed video as a negative for before/after captions).

Perturbations:

* ``reverse``: the clip backwards. Events swap order and every directed event flips ("moves
  left" -> "moves right", "grows" -> "shrinks", "turns red" from red), so it is a negative for
  any caption that describes change;
* ``swap_halves``: the second half of the frames first. Event order swaps while each event keeps
  its direction: the closest stand-in for an order-swapped pair;
* ``shuffle``: a random non-identity permutation per clip (HiTeA's shuffle test as a loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def perturb_time(video: torch.Tensor, how: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """video [B, T, ...] -> the same frames in another temporal order (a new tensor)."""
    t = video.shape[1]
    if t < 2:
        raise ValueError(f"the order objective needs at least 2 frames per clip, got {t}")
    if how == "reverse":
        return video.flip(1)
    if how == "swap_halves":
        return video.roll(shifts=t // 2, dims=1)
    if how == "shuffle":
        # drawn where the generator lives (a CUDA generator draws on the GPU; the identity check
        # then reads the device: this mode is not the sync-free default)
        device = generator.device if generator is not None else torch.device("cpu")
        identity = torch.arange(t, device=device)
        perms = []
        for _ in range(video.shape[0]):
            perm = torch.randperm(t, generator=generator, device=device)
            while torch.equal(perm, identity):
                perm = torch.randperm(t, generator=generator, device=device)
            perms.append(perm)
        index = torch.stack(perms).to(video.device)                       # [B, T]
        index = index.view(*index.shape, *([1] * (video.dim() - 2))).expand_as(video)
        return torch.gather(video, 1, index)
    raise ValueError(f"unknown temporal perturbation {how!r} (reverse | swap_halves | shuffle)")


def order_loss(text: torch.Tensor, video: torch.Tensor, perturbed: torch.Tensor,
               temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """text, video, perturbed [K, E] L2-normalised -> (loss, share of captions already preferring
    the real clip, a 0-d tensor). Cross-entropy over (real clip, perturbed clip), target: real."""
    real = (text * video).sum(-1)
    fake = (text * perturbed).sum(-1)
    logits = torch.stack([real, fake], dim=1) / temperature
    loss = F.cross_entropy(logits, torch.zeros(len(text), dtype=torch.long, device=text.device))
    return loss, (real > fake).float().mean().detach()
