"""The ``pretrain:`` section of params.yaml as a frozen dataclass.

The batch size, frame count and resolution belong to the ``loader:`` section and the
architecture to ``model:``; this section says how long and how fast to train, where
checkpoints and logs go, and which assumptions the cost projection uses.

A recipe (``pipeline/recipes/<name>.yaml``) changes ``model:`` keys (masking, sparsification,
objectives); it may also change ``pretrain:`` keys, e.g. a different number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import check


@dataclass(frozen=True)
class CostConfig:
    """Assumptions behind the paper-scale GPU-hour projection in ``results/metrics``.

    The projection multiplies FLOPs per clip of the paper-scale model (``preset``, a recipe
    overlay such as ViT-B/16 at 224 px) by the number of clips seen, and divides by a sustained
    throughput of ``gpu_peak_tflops * mfu``.
    """

    preset: str = "vit-b16"  # recipe overlay with the paper-scale model and loader settings
    clips: int = 5_500_000  # WebVid-2M + CC3M, clips (images count as one-frame clips)
    epochs: int = 10  # pre-training epochs at paper scale
    gpu: str = "NVIDIA RTX A6000"  # the GPU the projection is stated for
    gpu_peak_tflops: float = 154.8  # its dense bf16 tensor-core peak, TFLOP/s
    mfu: float = 0.35  # assumed model-FLOPs utilisation (sustained / peak)

    def __post_init__(self) -> None:
        check(bool(self.preset), "preset", "must name a recipe overlay")
        check(self.clips > 0, "clips", "must be > 0")
        check(self.epochs > 0, "epochs", "must be > 0")
        check(self.gpu_peak_tflops > 0, "gpu_peak_tflops", "must be > 0")
        check(0 < self.mfu <= 1, "mfu", "must be in (0, 1]")


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 120  # optimiser steps (each of `accum` micro-batches of loader.batch_size)
    lr: float = 3e-4  # peak learning rate after warm-up
    min_lr: float = 1e-5  # floor of the cosine decay
    warmup: int = 12  # linear warm-up steps (from 0 to lr)
    weight_decay: float = 0.05  # AdamW decay, not applied to norms, biases, embeddings
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    clip: float = 1.0  # max global grad norm; 0 disables clipping
    accum: int = 1  # micro-batches per optimiser step (gradient accumulation)
    compile: bool = False  # wrap the model in torch.compile
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    ckpt_every: int = 60  # steps between checkpoints (0: only the final one)
    log_every: int = 5  # steps between DVCLive log rows
    seed: int | None = None  # None: the top-level `seed`
    shards: str = "data/shards/pretrain"  # shard folder (or a glob / brace pattern)
    out_dir: str = "models/pretrain"  # checkpoints go to <out_dir>/<recipe>/
    results_dir: str = "results"  # dvclive/, metrics/ and plots/ go under it
    threads: int = 0  # torch intra-op threads (0: torch's default)
    cost: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", "must be > 0")
        check(self.lr > 0, "lr", "must be > 0")
        check(0 <= self.min_lr <= self.lr, "min_lr", "must be in [0, lr]")
        check(0 <= self.warmup < self.steps, "warmup", "must be in [0, steps)")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(all(0 <= b < 1 for b in self.betas), "betas", "each must be in [0, 1)")
        check(self.clip >= 0, "clip", "must be >= 0 (0 disables clipping)")
        check(self.accum >= 1, "accum", "must be >= 1")
        check(self.ckpt_every >= 0, "ckpt_every", "must be >= 0 (0: final checkpoint only)")
        check(self.log_every >= 1, "log_every", "must be >= 1")
        check(bool(self.shards), "shards", "must name a shard folder or pattern")
        check(self.threads >= 0, "threads", "must be >= 0")

    def trainer_config(self) -> "TrainerConfig":
        """The loop settings the generic :class:`train.trainer.Trainer` needs."""
        return TrainerConfig(
            steps=self.steps, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup,
            weight_decay=self.weight_decay, betas=self.betas, clip=self.clip,
            accum=self.accum, compile=self.compile, precision=self.precision,
            ckpt_every=self.ckpt_every, log_every=self.log_every,
        )


@dataclass(frozen=True)
class TrainerConfig:
    """What :class:`train.trainer.Trainer` needs; not a params section of its own.

    Pre-training builds it from ``pretrain:`` (:meth:`PretrainConfig.trainer_config`);
    fine-tuning builds it from its own section with the same field names.
    """

    steps: int
    lr: float
    min_lr: float = 0.0
    warmup: int = 0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    clip: float = 1.0
    accum: int = 1
    compile: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    ckpt_every: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", "must be > 0")
        check(self.lr > 0, "lr", "must be > 0")
        check(0 <= self.min_lr <= self.lr, "min_lr", "must be in [0, lr]")
        check(self.warmup >= 0, "warmup", "must be >= 0")
        check(self.clip >= 0, "clip", "must be >= 0")
        check(self.accum >= 1, "accum", "must be >= 1")
        check(self.precision in ("auto", "fp32", "bf16"), "precision", "must be auto, fp32 or bf16")
