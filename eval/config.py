"""The ``eval:``, ``finetune:`` and ``tables:`` sections of params.yaml as frozen dataclasses.

Built with ``pipeline.config.section(params, EvalConfig, "eval")`` (and ``FinetuneConfig`` /
``TablesConfig``); a bad value raises ``ConfigError("eval.<key>: ...")``.

Fine-tuning has one sub-section per task (``finetune.retrieval``, ``finetune.qa``,
``finetune.mc``) whose loop keys have the names of :class:`train.config.TrainerConfig`, so
the trainer's own loop runs them (:meth:`FinetuneTaskConfig.trainer_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import check

TASKS = ("retrieval", "qa", "mc")
Task = Literal["retrieval", "qa", "mc"]


# --------------------------------------------------------------------------- finetune:


@dataclass(frozen=True)
class FinetuneTaskConfig:
    shards: str = "data/shards/ret_train"  # training shard folder of the task
    steps: int = 16  # optimiser steps
    batch_size: int = 8  # videos per step (each brings all its captions / questions)
    lr: float = 5e-5  # peak learning rate (the new QA head uses head_lr_scale x this)
    min_lr: float = 0.0  # floor of the cosine decay
    warmup: int = 2  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decay
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    clip: float = 1.0  # max global grad norm (0: off)
    accum: int = 1  # micro-batches per optimiser step
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    ckpt_every: int = 8  # steps between resumable checkpoints (0: final only)
    log_every: int = 2  # steps between log rows

    def __post_init__(self) -> None:
        check(bool(self.shards), "shards", "must name a shard folder")
        check(self.steps > 0, "steps", "must be > 0")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.lr > 0, "lr", "must be > 0")
        check(0 <= self.min_lr <= self.lr, "min_lr", "must be in [0, lr]")
        check(0 <= self.warmup < self.steps, "warmup", "must be in [0, steps)")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(self.clip >= 0, "clip", "must be >= 0")
        check(self.accum >= 1, "accum", "must be >= 1")
        check(self.ckpt_every >= 0, "ckpt_every", "must be >= 0")
        check(self.log_every >= 1, "log_every", "must be >= 1")

    def trainer_config(self):
        from train.config import TrainerConfig

        return TrainerConfig(
            steps=self.steps, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup,
            weight_decay=self.weight_decay, betas=self.betas, clip=self.clip, accum=self.accum,
            precision=self.precision, ckpt_every=self.ckpt_every, log_every=self.log_every,
        )


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
    recipes: list[str] = field(default_factory=lambda: ["smaug"])  # pre-trained recipes to fine-tune
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
        check(self.num_frames is None or self.num_frames >= 1, "num_frames", "must be null or >= 1")
        check(self.threads >= 0, "threads", "must be >= 0")

    def task(self, name: str) -> FinetuneTaskConfig:
        check(name in TASKS, "task", f"must be one of {', '.join(TASKS)}, got {name!r}")
        return getattr(self, name)


# --------------------------------------------------------------------------- eval:


@dataclass(frozen=True)
class RetrievalEvalConfig:
    shards: str = "data/shards/ret_test"  # test shard folder
    dataset: str = "synthetic ret_test (MSRVTT-style)"  # the column name in the tables
    paragraph: bool = False  # join each video's captions into one query (DiDeMo, ActivityNet)
    rerank_k: int = 4  # VTM re-ranks each query's top k by VTC (0: VTC only)
    rerank_add_vtc: bool = True  # re-rank by VTM logit + VTC similarity (BLIP); false: VTM logit alone

    def __post_init__(self) -> None:
        check(self.rerank_k >= 0, "rerank_k", "must be >= 0 (0 disables VTM re-ranking)")


@dataclass(frozen=True)
class QAEvalConfig:
    shards: str = "data/shards/qa_test"
    dataset: str = "synthetic qa_test (MSRVTT-QA-style)"


@dataclass(frozen=True)
class MCEvalConfig:
    shards: str = "data/shards/mc_test"
    dataset: str = "synthetic mc_test (TGIF-Action-style)"


@dataclass(frozen=True)
class EvalConfig:
    recipes: list[str] = field(default_factory=lambda: ["smaug", "dense"])  # pre-trained recipes
    pretrain_dir: str = "models/pretrain"  # zero-shot checkpoints: <pretrain_dir>/<recipe>
    finetune_dir: str = "models/finetune"  # fine-tuned: <finetune_dir>/<recipe>/<task>
    tasks: list[Task] = field(default_factory=lambda: list(TASKS))  # which evaluations run
    num_frames: int | None = None  # frames at test time (null: the checkpoint's loader); more
    # than in training works: the temporal position embeddings are interpolated
    batch_size: int = 8  # videos per forward pass
    max_len: int | None = None  # text tokens (null: the checkpoint's loader.max_len)
    shuffle_test: bool = True  # also evaluate with frames shuffled and report the drop (HiTeA)
    seed: int | None = None  # shuffle-test permutations (null: the top-level `seed`)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the GPU if there is one
    metrics_dir: str = "results/metrics"  # eval-<recipe>.json (headline numbers) go here
    details_dir: str = "results/eval"  # <recipe>.json (every number, checkpoints, params) go here
    plots_dir: str = "results/plots"  # recall-at-k plot data go here
    retrieval: RetrievalEvalConfig = field(default_factory=RetrievalEvalConfig)
    qa: QAEvalConfig = field(default_factory=QAEvalConfig)
    mc: MCEvalConfig = field(default_factory=MCEvalConfig)

    def __post_init__(self) -> None:
        check(bool(self.recipes), "recipes", "must name at least one recipe")
        check(all(t in TASKS for t in self.tasks), "tasks", f"each must be one of {', '.join(TASKS)}")
        check(self.num_frames is None or self.num_frames >= 1, "num_frames", "must be null or >= 1")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.max_len is None or self.max_len >= 4, "max_len", "must be null or >= 4")
        check(self.threads >= 0, "threads", "must be >= 0")


# --------------------------------------------------------------------------- tables:


@dataclass(frozen=True)
class TablesConfig:
    eval_dir: str = "results/eval"  # reads <recipe>.json written by eval.evaluate
    metrics_dir: str = "results/metrics"  # reads pretrain-<recipe>.json written by train.pretrain
    bench: str = "results/bench/pretrain.json"  # the trainer's throughput benchmark
    out_dir: str = "results/tables"  # retrieval / qa / efficiency .md and .csv
    reference_rows: bool = True  # add published figures (marked "reported", with source)
    decimals: int = 1  # digits after the point for percentages
    candidate: str = "smaug"  # the claim table compares this run ...
    equal_steps: str = "dense"  # ... with this one (same steps) ...
    equal_time: str = "dense-equal-time"  # ... and with this one (same wall time); "" leaves a row out

    def __post_init__(self) -> None:
        check(0 <= self.decimals <= 4, "decimals", "must be in [0, 4]")
        check(bool(self.candidate), "candidate", "must name a pre-training run")
