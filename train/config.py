"""Training sections of params.yaml as frozen dataclasses: ``pretrain:``, ``finetune:``, ``cost:``.

The batch size, frame count and resolution belong to the ``loader:`` section and the
architecture to ``model:``; ``pretrain:`` says how long and how fast to train and where
checkpoints and logs go. Its loop keys (steps, lr, schedule, clipping, precision, checkpoints)
are :class:`TrainerConfig`, which fine-tuning's task sections share, so the two are run by one
loop and checked by one set of rules. ``cost:`` holds the assumptions of the paper-scale
GPU-hour projection, which the benchmark stage reports, so changing them retrains nothing.

A recipe (``pipeline/recipes/<name>.yaml``) changes ``model:`` keys (masking, sparsification,
objectives); it may also change ``pretrain:`` keys, e.g. a different number of steps.
The defaults here equal params.yaml's (a test checks every section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import check, check_seed


@dataclass(frozen=True)
class CostConfig:
    """Assumptions behind the paper-scale GPU-hour projection in ``results/bench/pretrain.json``.

    The projection multiplies FLOPs per clip of the paper-scale model (``preset``, a recipe
    overlay such as ViT-B/16 at 224 px) by the number of clips seen, and divides by a sustained
    throughput of ``gpu_peak_tflops * mfu``.
    """

    preset: str = "paper"  # recipe overlay with the paper-scale model and loader settings
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
class TrainerConfig:
    """The loop settings of :class:`train.trainer.Trainer`, shared by pre-training and fine-tuning.

    Not a params section of its own: ``pretrain:`` and each ``finetune.<task>:`` extend it.
    """

    steps: int = 800  # optimiser steps (each of `accum` micro-batches)
    lr: float = 1e-3  # peak learning rate after warm-up
    min_lr: float = 1e-5  # floor of the cosine decay
    warmup: int = 80  # linear warm-up steps (from 0 to lr)
    weight_decay: float = 0.05  # AdamW decay, not applied to norms, biases, embeddings
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    clip: float = 1.0  # max global grad norm; 0 disables clipping
    accum: int = 1  # micro-batches per optimiser step (gradient accumulation)
    compile: bool = False  # wrap the model in torch.compile
    # auto: bf16 autocast on a GPU that has bf16, fp16 autocast + gradient scaling on one that
    # has not (V100), fp32 on CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_checkpointing: bool = False  # recompute transformer blocks in backward (less memory, ~1/3 more compute)
    ckpt_every: int = 100  # steps between checkpoints (0: only the final one)
    log_every: int = 5  # steps between log rows

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps", "must be > 0")
        check(self.lr > 0, "lr", "must be > 0")
        check(0 <= self.min_lr <= self.lr, "min_lr", f"{self.min_lr:g} must be in [0, lr={self.lr:g}]")
        check(0 <= self.warmup < self.steps, "warmup",
              f"{self.warmup} must be in [0, steps={self.steps})")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
              "must be two numbers, each in [0, 1)")
        check(self.clip >= 0, "clip", "must be >= 0 (0 disables clipping)")
        check(self.accum >= 1, "accum", "must be >= 1")
        check(self.ckpt_every >= 0, "ckpt_every", "must be >= 0 (0: final checkpoint only)")
        check(self.log_every >= 1, "log_every", "must be >= 1")


@dataclass(frozen=True)
class SourceConfig:
    """One shard set of a several-source run (``pretrain.sources``): videos, or still images
    (read as clips of one repeated frame), drawn for a share ``weight`` of the batches."""

    name: str  # what the metrics and the log call it (samples_per_source)
    shards: str  # shard folder (or a glob / brace pattern)
    weight: float  # relative share of the batches (normalised over the sources)

    def __post_init__(self) -> None:
        check(bool(self.name.strip()), "name", "must be a non-empty name")
        check(bool(self.shards), "shards", f"must name a shard folder or pattern (source {self.name!r})")
        check(math.isfinite(self.weight) and self.weight > 0, "weight",
              f"must be > 0, got {self.weight} (source {self.name!r})")


SINGLE_SOURCE = "shards"  # the name a run on pretrain.shards reports its samples under


@dataclass(frozen=True)
class PretrainConfig(TrainerConfig):
    seed: int | None = None  # None: the top-level `seed`
    shards: str | None = "data/shards/pretrain"  # shard folder (or a glob / brace pattern); null with sources
    # Several shard sets by weight (video and image-caption sets), instead of `shards`:
    # [{name, shards, weight}, ...]; train/sources.py mixes them, one source per batch.
    sources: list[SourceConfig] = field(default_factory=list)
    out_dir: str = "models/pretrain"  # checkpoints go to <out_dir>/<run name>/
    results_dir: str = "results"  # dvclive/, metrics/ and plots/ go under it
    threads: int = 0  # torch intra-op threads (0: torch's default)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sources:
            check(not self.shards, "sources",
                  "set together with pretrain.shards; give one of them (pretrain.shards=null to train on sources)")
            names = [s.name for s in self.sources]
            dup = next((n for n in names if names.count(n) > 1), None)
            check(dup is None, "sources", f"source name {dup!r} is used twice; names must be unique")
        else:
            check(bool(self.shards), "shards", "must name a shard folder or pattern (or set pretrain.sources)")
        check(self.threads >= 0, "threads", "must be >= 0")
        check_seed(self.seed)

    def source_list(self) -> tuple[SourceConfig, ...]:
        """The shard sets this run reads: ``sources``, or ``shards`` as one source of weight 1."""
        return tuple(self.sources) or (SourceConfig(SINGLE_SOURCE, self.shards, 1.0),)


# --------------------------------------------------------------------------- finetune:

TASKS = ("retrieval", "qa", "mc")
Task = Literal["retrieval", "qa", "mc"]



@dataclass(frozen=True)
class FinetuneTaskConfig(TrainerConfig):
    """One task's fine-tuning: the shared loop keys (with fine-tuning's defaults) + its shards."""

    steps: int = 16
    lr: float = 5e-5  # the new QA head uses head_lr_scale x this
    min_lr: float = 0.0
    warmup: int = 2
    weight_decay: float = 0.01
    ckpt_every: int = 8
    log_every: int = 2
    shards: str = "data/shards/ret_train"  # training shard folder of the task
    batch_size: int = 8  # videos per step (each brings all its captions / questions)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.shards), "shards", "must name a shard folder")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass(frozen=True)
class RetrievalFinetuneConfig(FinetuneTaskConfig):
    shards: str = "data/shards/ret_train"
    vtc: float = 1.0  # weight of the contrastive loss
    vtm: float = 1.0  # weight of the matching loss (hard negatives from VTC similarity)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.vtc >= 0 and self.vtm >= 0 and self.vtc + self.vtm > 0, "vtc",
              "vtc and vtm must be >= 0 and not both 0")


@dataclass(frozen=True)
class QAFinetuneConfig(FinetuneTaskConfig):
    shards: str = "data/shards/qa_train"
    lr: float = 2e-4  # 5e-5 left QA at 16.3% (majority 6.2%), 2e-4 reached 19.4% (docs/parts/trainer.md)
    vocab_size: int = 1500  # answers kept: the most frequent training answers (ClipBERT/ALPRO)
    head_lr_scale: float = 10.0  # the freshly initialised classifier learns this much faster

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.vocab_size >= 2, "vocab_size", "must be >= 2")
        check(self.head_lr_scale > 0, "head_lr_scale", "must be > 0")


@dataclass(frozen=True)
class MCFinetuneConfig(FinetuneTaskConfig):
    shards: str = "data/shards/mc_train"


@dataclass(frozen=True)
class FinetuneConfig:
    recipes: list[str] = field(default_factory=lambda: ["smaug", "dense"])  # pre-trained recipes to fine-tune (the dvc finetune stage runs each)
    init_dir: str = "models/pretrain"  # starts from <init_dir>/<recipe> (a checkpoint folder)
    out_dir: str = "models/finetune"  # writes <out_dir>/<recipe>/<task>/
    num_frames: int | None = None  # frames per clip while fine-tuning (null: the checkpoint's loader)
    seed: int | None = None  # null: the top-level `seed`
    threads: int = 0  # torch intra-op threads (0: torch's default)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the GPU if there is one (torchrun: DDP)
    retrieval: RetrievalFinetuneConfig = field(default_factory=RetrievalFinetuneConfig)
    qa: QAFinetuneConfig = field(default_factory=QAFinetuneConfig)
    mc: MCFinetuneConfig = field(default_factory=MCFinetuneConfig)

    def __post_init__(self) -> None:
        check(bool(self.recipes), "recipes", "must name at least one recipe")
        check(len(set(self.recipes)) == len(self.recipes), "recipes", "must not name a recipe twice")
        check(self.num_frames is None or self.num_frames >= 1, "num_frames", "must be null or >= 1")
        check(self.threads >= 0, "threads", "must be >= 0")
        check_seed(self.seed)

    def task(self, name: str) -> FinetuneTaskConfig:
        check(name in TASKS, "task", f"must be one of {', '.join(TASKS)}, got {name!r}")
        return getattr(self, name)


# --------------------------------------------------------------------------- log:


@dataclass(frozen=True)
class LogConfig:
    """Where training curves go besides DVCLive (which always runs: ``dvc plots`` reads it)."""

    tensorboard: bool = False  # also write TensorBoard event files: <results_dir>/tensorboard/<run>
    wandb: str | None = None  # a Weights & Biases project: also log there (WANDB_MODE=offline honoured)

    def __post_init__(self) -> None:
        check(self.wandb is None or bool(self.wandb.strip()), "wandb", "must be a project name or null")
