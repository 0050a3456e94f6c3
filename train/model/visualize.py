"""The sparsification picture: which video patches SMAUG masks, keeps and drops.

``plot_sparsification(model, batch, path)`` encodes the first clips of a batch the way
pre-training does (masking, then token sparsification) and draws, for every sampled frame,
each patch as

* dark grey: masked before the encoder (never computed);
* red: dropped with its whole frame by temporal sparsification;
* blue: fused into the single weighted-mean token by spatial sparsification;
* clear (green outline): kept to the end of the encoder.

It works on any SMAUG model, trained or freshly initialised, and on any normalised clip (the
frames are min-max rescaled per clip for display).
"""

from __future__ import annotations

from pathlib import Path

import torch

MASKED, KEPT, TEMPORAL, SPATIAL = 0, 1, 2, 3
COLOURS = {MASKED: (0.15, 0.15, 0.15, 0.75), TEMPORAL: (0.85, 0.1, 0.1, 0.55),
           SPATIAL: (0.1, 0.35, 0.9, 0.55)}
LABELS = {MASKED: "masked (never encoded)", TEMPORAL: "dropped: frame removed",
          SPATIAL: "fused into one token", KEPT: "kept to the last layer"}


def patch_status(enc, sample: int) -> torch.Tensor:
    """Per-patch status (MASKED / KEPT / TEMPORAL / SPATIAL) of one clip: [N] long."""
    n = enc.num_patches
    status = torch.full((n,), KEPT, dtype=torch.long)
    if enc.mask is not None:
        status[enc.mask[sample].cpu().bool()] = MASKED
    for step in enc.trace:
        if "temporal_dropped" in step:
            status[step["temporal_dropped"][sample].cpu()] = TEMPORAL
        if "spatial_fused" in step:
            status[step["spatial_fused"][sample].cpu()] = SPATIAL
    final = enc.ids[sample].cpu()
    status[final[final >= 0]] = KEPT
    return status


@torch.no_grad()
def plot_sparsification(
    model, batch: dict, path: str | Path, *, clips: int = 2, max_frames: int = 8, seed: int = 0
) -> Path:
    """Draw masked / kept / dropped patches of the first ``clips`` clips into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    video = batch["video"][:clips]
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        enc = model._encode_video(video.to(device), mask=model.cfg.masking.video_ratio > 0,
                                  generator=generator, trace=True)
    finally:
        model.train(was_training)
    vcfg = model.cfg.video
    t, gh, gw = enc.grid
    p, tub = vcfg.patch_size, vcfg.tubelet
    frames = video.shape[1]
    shown = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long().tolist()
    fig, axes = plt.subplots(len(video), len(shown), squeeze=False,
                             figsize=(1.9 * len(shown), 2.0 * len(video) + 0.6))
    for row in range(len(video)):
        status = patch_status(enc, row).reshape(t, gh, gw)
        clip = video[row].float().cpu()
        clip = (clip - clip.min()) / (clip.max() - clip.min()).clamp_min(1e-6)
        for col, f in enumerate(shown):
            ax = axes[row][col]
            ax.imshow(clip[f].permute(1, 2, 0).numpy())
            for i in range(gh):
                for j in range(gw):
                    s = int(status[f // tub, i, j])
                    if s == KEPT:
                        ax.add_patch(Rectangle((j * p, i * p), p, p, fill=False,
                                               edgecolor=(0.1, 0.8, 0.2), linewidth=0.8))
                    else:
                        ax.add_patch(Rectangle((j * p, i * p), p, p, color=COLOURS[s], linewidth=0))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"frame {f}", fontsize=8)
        kept = int((status == KEPT).sum())
        name = batch["key"][row] if "key" in batch else f"clip {row}"
        axes[row][0].set_ylabel(f"{name}\n{kept}/{t * gh * gw} patches kept",
                                fontsize=7)
    sp = model.cfg.sparsify
    fig.suptitle(
        f"masking {model.cfg.masking.video_ratio:.0%} {model.cfg.masking.video_mode}; "
        f"sparsify after blocks {list(sp.layers) if sp.active else 'off'} "
        f"(frames keep {sp.temporal_keep:.0%}, tokens keep {sp.spatial_keep:.0%})", fontsize=9)
    handles = [Patch(facecolor=COLOURS.get(k, (1, 1, 1, 0)), edgecolor=(0.1, 0.8, 0.2) if k == KEPT
                     else "none", label=LABELS[k]) for k in (MASKED, TEMPORAL, SPATIAL, KEPT)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
