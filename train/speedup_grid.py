"""SMAUG's speed-up over dense across tokens per clip: ``results/bench/pretrain.json["grid"]``.

For each point ``frames x image size`` (tokens per clip = frames * (size / patch)^2), both
recipes are built for that input (``loader``/``model.video`` num_frames and image_size set
alike) and get:
- ``flops_per_clip``: one training step's forward+backward FLOPs (FlopCounterMode, attention
  counted: train/cost.py), for every point;
- ``clips_per_s``: timed training steps on a synthetic batch (shapes are what costs, not pixel
  values; the sparsifier keeps a fixed number of tokens), steps interleaved between the recipes
  with the order swapped each step, **only for points up to ``timed_max_tokens``**: larger
  points are marked ``"timed": false`` and carry the counted FLOPs alone (a CPU cannot time
  them in a pipeline stage's budget).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from train import cost


@dataclass(frozen=True)
class GridPoint:
    frames: int
    image_size: int

    @classmethod
    def parse(cls, text: str) -> "GridPoint":
        """``"8x96"`` -> GridPoint(8, 96); a clear error naming the bad text otherwise."""
        try:
            frames, size = (int(x) for x in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"--grid: bad point {text!r} (expected FRAMESxSIZE, e.g. 8x96)") from None
        if frames < 1 or size < 1:
            raise ValueError(f"--grid: bad point {text!r} (frames and size must be >= 1)")
        return cls(frames, size)

    def overrides(self) -> list[str]:
        return [f"loader.num_frames={self.frames}", f"loader.image_size={self.image_size}",
                f"model.video.num_frames={self.frames}", f"model.video.image_size={self.image_size}"]


def tokens_per_clip(point: GridPoint, patch_size: int, tubelet: int = 1) -> int:
    return (point.frames // tubelet) * (point.image_size // patch_size) ** 2


def measure_grid(args, points: list[GridPoint], names: list[str], *, batch_size: int, steps: int,
                 timed_max_tokens: int, load_run_config) -> list[dict]:
    """One dict per point: tokens, each recipe's FLOPs (and clips/s when timed), the ratios."""
    from tqdm import tqdm

    from train.model import SMAUG
    from train.trainer import Trainer, default_loss

    rows = []
    for point in tqdm(points, desc="speed-up grid", unit="point"):
        runs = {n: load_run_config(args.params, n, [*args.overrides, *point.overrides()]) for n in names}
        video = runs[names[0]]["model"].video
        tokens = tokens_per_clip(point, video.patch_size, video.tubelet)
        timed = tokens <= timed_max_tokens
        batch = cost.synthetic_batch(batch_size, point.frames, point.image_size, runs[names[0]]["loader"].max_len)
        row: dict = {"frames": point.frames, "image_size": point.image_size, "tokens_per_clip": tokens,
                     "timed": timed, "batch_size": batch_size}
        trainers = {}
        for name in names:
            torch.manual_seed(runs[name]["seed"])
            trainer = Trainer(SMAUG(runs[name]["model"]), runs[name]["pretrain"], progress=False, seed=runs[name]["seed"])
            flops, _ = cost.count_step_flops(trainer.model, batch, default_loss, autocast_dtype=trainer.autocast_dtype)
            row[name] = {"flops_per_clip": flops / batch_size}
            trainers[name] = trainer
        if timed:
            times: dict[str, list[float]] = {n: [] for n in names}
            for i in range(1 + steps):  # step 0 of each recipe is warm-up
                for name in names if i % 2 == 0 else names[::-1]:
                    t0 = time.perf_counter()
                    trainers[name].train_step([batch])
                    if i > 0:
                        times[name].append(time.perf_counter() - t0)
            for name in names:
                row[name].update(step_s=times[name], clips_per_s=batch_size / statistics.median(times[name]))
            row["speedup"] = row[names[0]]["clips_per_s"] / row[names[1]]["clips_per_s"]
        row["flops_ratio"] = row[names[1]]["flops_per_clip"] / row[names[0]]["flops_per_clip"]
        rows.append(row)
        del trainers
    return rows


def plot_speedup(rows: list[dict], path, candidate: str, baseline: str) -> None:
    """Speed-up (timed) and FLOPs ratio (counted) against tokens per clip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    rows = sorted(rows, key=lambda r: r["tokens_per_clip"])
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["tokens_per_clip"] for r in rows]
    ax.plot(x, [r["flops_ratio"] for r in rows], "s--", color="tab:gray", label="FLOPs ratio (counted)")
    timed = [r for r in rows if r.get("timed")]
    if timed:
        ax.plot([r["tokens_per_clip"] for r in timed], [r["speedup"] for r in timed], "o-", color="tab:blue",
                label="speed-up, clips/s (timed, CPU)")
    for r in rows:
        ax.annotate(f"{r['frames']}x{r['image_size']}", (r["tokens_per_clip"], r["flops_ratio"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("video tokens per clip (frames x patches)")
    ax.set_ylabel(f"{candidate} over {baseline}")
    ax.set_title(f"{candidate} vs {baseline}: speed-up grows with tokens per clip")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
