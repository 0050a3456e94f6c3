"""Cutting a clip into space-time patches and the separable position embeddings over them.

Token order everywhere: time-major, ``index = t * (gh * gw) + row * gw + col`` over the
``T' = T / tubelet`` temporal slots. A tubelet of 1 is one PxP patch per frame (the default:
it keeps every frame addressable for temporal sparsification and lets ``num_frames: 1`` work
for Singularity-style single-frame training); 2 gives 2xPxP tubes (half the tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def patchify(video: torch.Tensor, patch: int, tubelet: int = 1) -> torch.Tensor:
    """video [B, T, C, H, W] -> patches [B, T/tubelet * H/patch * W/patch, tubelet*patch*patch*C]."""
    b, t, c, h, w = video.shape
    if t % tubelet or h % patch or w % patch:
        raise ValueError(
            f"video of {t} frames {h}x{w} does not split into {tubelet}x{patch}x{patch} patches"
        )
    gt, gh, gw = t // tubelet, h // patch, w // patch
    x = video.reshape(b, gt, tubelet, c, gh, patch, gw, patch)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)  # [B, gt, gh, gw, tubelet, p, p, C]
    return x.reshape(b, gt * gh * gw, tubelet * patch * patch * c)


class SeparablePosEmbed(nn.Module):
    """Spatial [gh*gw, D] plus temporal [T', D] learned embeddings (summed per token).

    Built for one grid; :meth:`forward` interpolates to any other frame count (linear in time)
    or resolution (bicubic in space), so a model trained on 8 frames at 96 px runs on 12 frames
    at 112 px.
    """

    def __init__(self, grid: int, frames: int, dim: int) -> None:
        super().__init__()
        self.grid, self.frames = grid, frames
        self.spatial = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)
        self.temporal = nn.Parameter(torch.randn(1, frames, dim) * 0.02)

    def forward(self, frames: int, gh: int, gw: int) -> torch.Tensor:
        """-> [1, frames * gh * gw, D] in time-major token order."""
        dim = self.spatial.shape[-1]
        spatial = self.spatial
        if (gh, gw) != (self.grid, self.grid):
            grid = spatial.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
            spatial = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)
        temporal = self.temporal
        if frames != self.frames:
            if self.frames == 1:
                temporal = temporal.expand(1, frames, dim)
            else:
                line = F.interpolate(temporal.transpose(1, 2), size=frames, mode="linear",
                                     align_corners=True)
                temporal = line.transpose(1, 2)
        pos = temporal[:, :, None, :] + spatial[:, None, :, :]  # [1, T', gh*gw, D]
        return pos.reshape(1, frames * gh * gw, dim)


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """[positions, dim]: sin on even, cos on odd channels of ``pos / 10000^(2(j//2)/dim)``
    (VideoMAE's table; float64 inside so it matches theirs bit for bit)."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    return torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle)).float()


class SinusoidPosEmbed(nn.Module):
    """VideoMAE's fixed positions: one sin/cos row per time-major token index, no parameters.

    Needed to run VideoMAE weights as trained: their table over ``t*gh*gw + s`` is not a sum
    of a spatial and a temporal term. Any grid gets a table, but since a token's position is
    its index, a grid other than the trained one moves tokens' positions (as in VideoMAE).
    """

    def __init__(self, grid: int, frames: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoid_table(frames * grid * grid, dim)[None],
                             persistent=False)

    def forward(self, frames: int, gh: int, gw: int) -> torch.Tensor:
        """-> [1, frames * gh * gw, D] in time-major token order."""
        n = frames * gh * gw
        if n == self.table.shape[1]:
            return self.table
        return sinusoid_table(n, self.dim)[None].to(self.table.device)
