"""The video tower: a ViT over space-time patches with masking and token sparsification.

Steps of :meth:`VideoEncoder.forward` (shapes for B clips, N = T' * gh * gw patches):

1. ``patchify``: [B, T, 3, H, W] -> raw patches [B, N, tubelet*P*P*3];
2. masking (optional): keep K of N patches (``random_masking`` / ``tube_masking``), so the
   patch embedding, attention and MLPs only ever see the K visible ones;
3. linear patch embedding + position embedding (learned separable space + time, or VideoMAE's
   fixed sinusoid with ``video.pos_embed: sinusoid``), CLS token prepended,
   then ``ln_pre`` (a LayerNorm when ``video.ln_pre``, as in CLIP; otherwise nothing);
4. ViT blocks; after each block listed in ``sparsify.layers``: temporal then spatial
   sparsification scored by that block's CLS attention row;
5. final LayerNorm -> tokens [B, 1+n, D] (CLS first) and each token's patch id.

No step reads a value back from the device: every token count follows from N, the ratios and
the number of fused tokens so far (a Python int), so a GPU never has to synchronise with the
host in the forward. What was dropped where (``trace``, for the picture) costs a per-sample loop
and is recorded only with ``trace=True``.

During pre-training the keep rates may warm up (``sparsify.warmup_steps``): :meth:`set_step`
sets the step's rates; in eval mode, or before any ``set_step``, the configured (final) rates
apply, so evaluation and a model used without the trainer always sparsify at full strength.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import SparsifyConfig, VideoConfig
from .layers import Block
from .masking import kept_ids, random_masking, tube_masking
from .patches import SeparablePosEmbed, SinusoidPosEmbed, patchify
from .sparsify import keep_schedule, spatial_sparsify, temporal_sparsify


@dataclass
class VideoEncoding:
    tokens: torch.Tensor                 # [B, 1+n, D] final (normed) tokens, CLS first
    ids: torch.Tensor                    # [B, n] patch index of each token (-1 = fused token)
    grid: tuple[int, int, int]           # (T', gh, gw) of the input clip
    mask: torch.Tensor | None = None     # [B, N] 1 = masked before the encoder (None: no mask)
    ids_restore: torch.Tensor | None = None  # [B, N] from the masking function
    visible_ids: torch.Tensor | None = None  # [B, K] patch ids that entered the encoder
    trace: list[dict] = field(default_factory=list)  # per sparsified layer: what was dropped
    n_fused: int = 0                     # fused tokens among ``ids`` (the same in every sample)

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoConfig, sparsify: SparsifyConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.sparsify_cfg = sparsify if sparsify is not None and sparsify.active else None
        dim = cfg.width
        self.patch_embed = nn.Linear(cfg.tubelet * cfg.patch_size**2 * 3, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        pos_kind = SinusoidPosEmbed if cfg.pos_embed == "sinusoid" else SeparablePosEmbed
        self.pos = pos_kind(cfg.grid, cfg.num_frames // cfg.tubelet, dim)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.ln_pre = nn.LayerNorm(dim, eps=cfg.norm_eps) if cfg.ln_pre else nn.Identity()
        self.blocks = nn.ModuleList(
            Block(dim, cfg.heads, cfg.mlp_ratio, r, act=cfg.act, eps=cfg.norm_eps) for r in rates
        )
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.sparse_layers = set(self.sparsify_cfg.layers) if self.sparsify_cfg else set()
        self.step_keep: tuple[float, float] | None = None  # (spatial, temporal) during warm-up

    def set_step(self, step: int) -> None:
        """Use the keep rates of pre-training ``step`` (``sparsify.warmup_steps``) in training."""
        sp = self.sparsify_cfg
        if sp is None or sp.warmup_steps <= 0 or step >= sp.warmup_steps:
            self.step_keep = None
            return
        self.step_keep = (keep_schedule(sp.spatial_keep, step, sp.warmup_steps),
                          keep_schedule(sp.temporal_keep, step, sp.warmup_steps))

    def keep_rates(self) -> tuple[float, float]:
        """(spatial, temporal) keep rates of this forward: the warm-up's in training mode."""
        sp = self.sparsify_cfg
        if self.training and self.step_keep is not None:
            return self.step_keep
        return sp.spatial_keep, sp.temporal_keep

    def forward(
        self,
        video: torch.Tensor,
        *,
        mask_ratio: float = 0.0,
        mask_mode: str = "random",
        sparsify: bool = True,
        generator: torch.Generator | None = None,
        trace: bool = False,
    ) -> VideoEncoding:
        """video [B, T, 3, H, W] (any T divisible by tubelet, H, W divisible by patch).
        ``trace=True`` records the ids each sparsification step dropped (for the picture)."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be [B, T, 3, H, W], got {tuple(video.shape)}")
        cfg = self.cfg
        b, t, _, h, w = video.shape
        grid = (t // cfg.tubelet, h // cfg.patch_size, w // cfg.patch_size)
        patches = patchify(video, cfg.patch_size, cfg.tubelet)                # [B, N, F]
        pos = self.pos(*grid).expand(b, -1, -1)                               # [B, N, D]
        n = patches.shape[1]
        ids = torch.arange(n, device=video.device).expand(b, n)
        mask = ids_restore = None
        if mask_ratio > 0:
            if mask_mode == "tube":
                patches, mask, ids_restore = tube_masking(patches, mask_ratio, grid[0], generator)
            elif mask_mode == "random":
                patches, mask, ids_restore = random_masking(patches, mask_ratio, generator)
            else:
                raise ValueError(f"unknown mask_mode {mask_mode!r} (random | tube)")
            ids = kept_ids(ids_restore, patches.shape[1])                     # [B, K]
            pos = pos.gather(1, ids[..., None].expand(-1, -1, pos.shape[-1]))
        x = self.patch_embed(patches) + pos
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)           # [B, 1+K, D]
        x = self.ln_pre(x)
        visible = ids
        steps: list[dict] = []
        n_fused = 0
        sp = self.sparsify_cfg if sparsify else None
        keep = self.keep_rates() if sp is not None else (1.0, 1.0)
        for i, block in enumerate(self.blocks):
            at_sparse = sp is not None and i in self.sparse_layers
            x, cls_attn = block(x, return_cls_attention=at_sparse)
            if at_sparse:
                x, ids, n_fused, step = self._sparsify(x, cls_attn, ids, grid, sp, keep, n_fused,
                                                       trace)
                if trace:
                    steps.append({**step, "layer": i})
        return VideoEncoding(self.norm(x), ids, grid, mask, ids_restore, visible, steps, n_fused)

    @staticmethod
    def _sparsify(x, scores, ids, grid, sp: SparsifyConfig, keep, n_fused: int, trace: bool):
        spatial_keep, temporal_keep = keep
        step: dict = {}
        if sp.temporal and temporal_keep < 1.0:
            before = ids
            x, scores, ids, _ = temporal_sparsify(
                x, scores, ids, temporal_keep, tokens_per_frame=grid[1] * grid[2], frames=grid[0],
                n_fused=n_fused,
            )
            if trace:
                step["temporal_dropped"] = _dropped(before, ids)
        if sp.spatial and spatial_keep < 1.0:
            before = ids
            x, scores, ids, kept = spatial_sparsify(x, scores, ids, spatial_keep)
            n_fused += int(kept.shape[1] < before.shape[1])  # shapes only: one more fused token
            if trace:
                step["spatial_fused"] = _dropped(before, ids)
        step["kept"] = ids
        return x, ids, n_fused, step


def _dropped(before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
    """Patch ids in ``before`` but not in ``after``, per sample (fused ids left out)."""
    out = []
    for b_ids, a_ids in zip(before, after):
        gone = ~torch.isin(b_ids, a_ids) & (b_ids >= 0)
        out.append(b_ids[gone])
    return out
