"""Video-text contrastive learning (VTC): symmetric InfoNCE with a learnable temperature.

Under ``torch.distributed`` the features of every rank are gathered so each clip is contrasted
with the whole global batch; :func:`gather_with_grad` keeps the gradient of the local slice
(the other ranks' slices are constants here). Every rank computes the loss L over the full
global similarity matrix (cheap: [world*B, world*B] of dot products), so the gradient each rank
gets for its own features is exactly dL/d(its features) (open_clip's non-local loss).

DDP then *averages* the parameter gradients over the W ranks. For the other objectives (each
rank's loss is the mean over its own batch) that average is the global batch's gradient; for
VTC it would be (1/W) dL/dtheta, since each rank holds only its own share of dL/dtheta: VTC's
weight against the other losses would shrink with the GPU count. So the local slice's gradient
is multiplied by W (:func:`world_share`), making the average exactly dL/dtheta. The temperature
is not scaled: every rank computes the whole dL/dtau itself, and the average of W equal
values is that value.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.001, 0.5


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def world_share(x: torch.Tensor, world: int) -> torch.Tensor:
    """``x`` whose gradient is multiplied by ``world``: this rank's features carry their share of
    a loss every rank computes in full, so DDP's average over ranks gives the loss's gradient."""
    return _ScaleGrad.apply(x, float(world)) if world > 1 else x


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """x [B, E] on every rank -> ([sum_r B_r, E] with this rank's rows differentiable, offset of
    this rank's rows). Without an initialised process group: (x, 0). The rows' gradient is
    scaled by the world size (:func:`world_share`): meant for a loss every rank computes in full
    and DDP then averages.

    Ranks may hold different batch sizes (the last, short batch of a rank's shard share), so
    the sizes are exchanged first and every rank pads to the largest before the all_gather.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    padded = x.detach()
    if x.shape[0] < longest:
        padded = torch.cat([padded, padded.new_zeros(longest - x.shape[0], *x.shape[1:])])
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    parts = [part[:n] for part, n in zip(parts, sizes)]
    parts[rank] = world_share(x, world)
    return torch.cat(parts, dim=0), sum(sizes[:rank])


def vtc_loss(video: torch.Tensor, text: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """video, text [B, E] L2-normalised, pair i <-> i; -> mean of video->text and text->video CE."""
    all_video, _ = gather_with_grad(video)
    all_text, _ = gather_with_grad(text)
    targets = torch.arange(all_video.shape[0], device=video.device)
    v2t = all_video @ all_text.t() / temperature   # [world*B, world*B]
    return 0.5 * (F.cross_entropy(v2t, targets) + F.cross_entropy(v2t.t(), targets))


class VTC(nn.Module):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE)

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return vtc_loss(video, text, self.temperature)
