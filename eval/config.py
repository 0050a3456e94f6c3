"""The ``eval:`` and ``tables:`` sections of params.yaml as frozen dataclasses.

Built with ``pipeline.config.section(params, EvalConfig, "eval")`` (and ``TablesConfig``); a bad
value raises ``ConfigError("eval.<key>: ...")``. The defaults equal params.yaml's (a test checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import check, check_seed
from train.config import TASKS, Task

# Zero-shot-only evaluations (no fine-tuned checkpoint is looked for): caption multiple choice
# (MSRVTT-MC protocol) and fill-in-the-blank by the MLM head (LSMDC-FiB)
ZERO_SHOT_TASKS = ("mc_caption", "fib")
EVAL_TASKS = TASKS + ZERO_SHOT_TASKS
EvalTask = Literal["retrieval", "qa", "mc", "mc_caption", "fib"]


# --------------------------------------------------------------------------- eval:


@dataclass(frozen=True)
class RetrievalEvalConfig:
    shards: str = "data/shards/ret_test"  # test shard folder
    dataset: str = "synthetic ret_test (MSRVTT-style)"  # the column name in the tables
    paragraph: bool = False  # join each video's captions into one query (DiDeMo, ActivityNet)
    rerank_k: int = 4  # VTM re-ranks each query's top k by VTC (0: VTC only)
    rerank_add_vtc: bool = True  # re-rank by VTM logit + VTC similarity (BLIP); false: VTM logit alone
    # temporal-order pairs (eval/order_pairs.py): each clip against its caption with the events
    # swapped; null: not scored
    order_pairs: str | None = "data/raw/synthetic/annotations/order_pairs/test.json"
    sparsify: bool = True  # true: token sparsification as trained; false: every visible token at test time (a bool: YAML reads a bare off as false)

    def __post_init__(self) -> None:
        check(self.rerank_k >= 0, "rerank_k", "must be >= 0 (0 disables VTM re-ranking)")
        check(self.order_pairs is None or bool(self.order_pairs.strip()), "order_pairs",
              "must be a path or null")


@dataclass(frozen=True)
class QAEvalConfig:
    shards: str = "data/shards/qa_test"
    dataset: str = "synthetic qa_test (MSRVTT-QA-style)"
    # recipes whose pre-trained checkpoint answers open-ended QA zero-shot through its MLM head
    # (eval/mlm_qa.py), over the fine-tuned classifier's answer list, without the shuffle pass
    # (it costs about 3 classifier passes); []: none; a checkpoint without an MLM head is skipped
    zero_shot_mlm: list[str] = field(default_factory=lambda: ["smaug"])
    mlm_template: str = "question: {question} answer: {mask}"  # {mask}: one [MASK] per answer token

    def __post_init__(self) -> None:
        check("{question}" in self.mlm_template and "{mask}" in self.mlm_template, "mlm_template",
              "must contain {question} and {mask}")


@dataclass(frozen=True)
class MCEvalConfig:
    shards: str = "data/shards/mc_test"
    dataset: str = "synthetic mc_test (TGIF-Action-style)"


@dataclass(frozen=True)
class CaptionTestConfig:
    """A zero-shot caption test set (eval/caption_choice.py, eval/mlm_qa.py), run for every recipe
    when eval.tasks lists it."""

    shards: str  # test shard folder
    dataset: str  # the column name in the tables

    def __post_init__(self) -> None:
        check(bool(self.shards.strip()), "shards", "must be a path")


ENSEMBLE_MODES = ("none", "concat", "mean", "max", "lse")  # eval/ensemble.py defines each


@dataclass(frozen=True)
class EnsembleStudyConfig:
    """The frame-ensemble comparison (eval/ensemble.py): each mode against the training frame count."""

    modes: list[str] = field(default_factory=lambda: ["concat", "mean", "max", "lse"])  # []: no study
    frames: int = 8  # test frames N of every mode (mean/max/lse: groups of the training count)
    recipes: list[str] = field(default_factory=lambda: ["smaug"])  # recipes studied (when evaluated)
    # tasks studied, each in one setting: retrieval zero-shot, qa fine-tuned, mc zero-shot (qa adds
    # about as much time as retrieval: decoding its test clips at `frames`)
    tasks: list[Task] = field(default_factory=lambda: ["retrieval"])

    def __post_init__(self) -> None:
        check(all(m in ENSEMBLE_MODES[1:] for m in self.modes), "modes",
              f"each must be one of {', '.join(ENSEMBLE_MODES[1:])} (the training count is the baseline row)")
        check(len(set(self.modes)) == len(self.modes), "modes", "must not repeat a mode")
        check(self.frames >= 2, "frames", "must be >= 2")
        check(all(t in TASKS for t in self.tasks), "tasks", f"each must be one of {', '.join(TASKS)}")


@dataclass(frozen=True)
class EvalConfig:
    recipes: list[str] = field(default_factory=lambda: ["smaug"])  # pre-training runs
    pretrain_dir: str = "models/pretrain"  # zero-shot checkpoints: <pretrain_dir>/<recipe>
    finetune_dir: str = "models/finetune"  # fine-tuned: <finetune_dir>/<recipe>/<task>
    # which evaluations run; mc_caption and fib are zero-shot only
    tasks: list[EvalTask] = field(default_factory=lambda: list(EVAL_TASKS))
    # the frame the model sees: centre (its centre square, which drops 44% of a 16:9 frame) or
    # whole (resized to its square, squeezed: Singularity's and VindLU's test view). Neither wins
    # on both sets measured (studies/view), so the default stays the view training boxes resemble
    view: Literal["centre", "whole"] = "centre"
    num_frames: int | None = None  # frames at test time (null: the checkpoint's loader); more
    # than in training works: the temporal position embeddings are interpolated
    # test-time frame ensemble (eval/ensemble.py): none | concat (one clip of ensemble_frames) |
    # mean | max | lse (ensemble_frames split into groups of num_frames, or of the training count)
    frames_ensemble: Literal["none", "concat", "mean", "max", "lse"] = "none"
    ensemble_frames: int | None = None  # N test frames of the ensemble (required unless none)
    ensemble_temperature: float = 0.1  # lse: tau * log mean exp(score / tau)
    ensemble_study: EnsembleStudyConfig = field(default_factory=EnsembleStudyConfig)
    batch_size: int = 8  # videos per forward pass
    max_len: int | None = None  # text tokens (null: the checkpoint's loader.max_len)
    shuffle_test: bool = True  # also evaluate with frames shuffled and report the drop (HiTeA)
    seed: int | None = None  # shuffle-test permutations and bootstrap draws (null: the top-level `seed`)
    bootstrap: int = 1000  # resamples of test videos for the 95% intervals of t2v R@K (0: none)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the GPU if there is one
    metrics_dir: str = "results/metrics"  # eval-<recipe>.json (headline numbers) go here
    details_dir: str = "results/eval"  # <recipe>.json (every number, checkpoints, params) go here
    plots_dir: str = "results/plots"  # recall-at-k plot data go here
    retrieval: RetrievalEvalConfig = field(default_factory=RetrievalEvalConfig)
    qa: QAEvalConfig = field(default_factory=QAEvalConfig)
    mc: MCEvalConfig = field(default_factory=MCEvalConfig)
    # MSRVTT-MC-style: 5 candidate captions per test clip, ranked by VTM (VTC beside), zero-shot
    # (eval.tasks mc_caption)
    mc_caption: CaptionTestConfig = field(default_factory=lambda: CaptionTestConfig(
        "data/shards/mc_caption_test", "synthetic mc_caption_test (MSRVTT-MC-style)"))
    # LSMDC-FiB-style: a caption with one word blanked, filled by the MLM head over the test file's
    # answer words, zero-shot (eval.tasks fib; for the recipes in eval.qa.zero_shot_mlm, as
    # zero-shot MLM QA; recipes without an MLM head skip it)
    fib: CaptionTestConfig = field(default_factory=lambda: CaptionTestConfig(
        "data/shards/fib_test", "synthetic fib_test (LSMDC-FiB-style)"))

    def __post_init__(self) -> None:
        check(bool(self.recipes), "recipes", "must name at least one recipe")
        check(len(set(self.recipes)) == len(self.recipes), "recipes", "must not name a recipe twice")
        # none would rewrite the recipe's results files with nothing in them
        check(bool(self.tasks), "tasks", f"must name at least one of {', '.join(EVAL_TASKS)}")
        check(all(t in EVAL_TASKS for t in self.tasks), "tasks", f"each must be one of {', '.join(EVAL_TASKS)}")
        check(len(set(self.tasks)) == len(self.tasks), "tasks", "must not name a task twice")
        check_seed(self.seed)
        check(self.num_frames is None or self.num_frames >= 1, "num_frames", "must be null or >= 1")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.frames_ensemble in ENSEMBLE_MODES, "frames_ensemble", f"must be one of {', '.join(ENSEMBLE_MODES)}")
        if self.frames_ensemble == "none":
            check(self.ensemble_frames is None, "ensemble_frames",
                  "is set but frames_ensemble is none; set frames_ensemble too, or null this")
        else:
            check(self.ensemble_frames is not None and self.ensemble_frames >= 1, "ensemble_frames",
                  f"must be >= 1 with frames_ensemble={self.frames_ensemble}")
        check(not (self.frames_ensemble == "concat" and self.num_frames is not None), "num_frames",
              "must be null with frames_ensemble=concat (ensemble_frames sets the clip's frame count)")
        check(self.ensemble_temperature > 0, "ensemble_temperature", "must be > 0")
        check(self.max_len is None or self.max_len >= 4, "max_len", "must be null or >= 4")
        check(self.threads >= 0, "threads", "must be >= 0")
        check(self.bootstrap == 0 or self.bootstrap >= 100, "bootstrap",
              "must be 0 (no intervals) or >= 100 resamples")


# --------------------------------------------------------------------------- tables:


@dataclass(frozen=True)
class TablesConfig:
    eval_dir: str = "results/eval"  # reads <recipe>.json written by eval.evaluate
    metrics_dir: str = "results/metrics"  # reads pretrain-<recipe>.json written by train.pretrain
    bench: str = "results/bench/pretrain.json"  # the trainer's throughput benchmark
    out_dir: str = "results/tables"  # retrieval / qa / efficiency .md and .csv
    reference_rows: bool = True  # add published figures (marked "reported", with source)
    decimals: int = 1  # digits after the point for percentages
    cost_plot: str = "results/plots/cost_vs_accuracy.png"  # zero-shot R@1 against core- / GPU-hours
    # a folder of ablation runs' results (metrics/pretrain-<run>.json, eval/<run>.json) to plot
    # too, when present; null in the default stage, which declares only tables.runs' files
    ablation_dir: str | None = None
    # the pre-training runs the tables show: <eval_dir>/<run>.json must exist, <metrics_dir>/pretrain-<run>.json
    # is read when present (null: every <run>.json found). Naming them keeps a stage's declared
    # inputs and what it reads the same when other stages have written into the same folders.
    runs: list[str] | None = None

    def __post_init__(self) -> None:
        check(self.runs is None or (bool(self.runs) and len(set(self.runs)) == len(self.runs)), "runs",
              "must be null or name at least one run, none twice")
        check(0 <= self.decimals <= 4, "decimals", "must be in [0, 4]")
        check(self.cost_plot.endswith(".png"), "cost_plot", "must be a .png path")


# --------------------------------------------------------------------------- ablation:


@dataclass(frozen=True)
class AblationConfig:
    # table rows: run names (a recipe, or dense-equal-time), in this order
    rows: list[str] = field(default_factory=lambda: [
        "dense", "mask-only", "mask-no-mvm", "sparsify-only", "smaug", "simvtp", "mac", "singularity",
        "dense-equal-time"])
    seeded: list[str] = field(default_factory=lambda: ["smaug", "dense", "dense-equal-time", "mask-no-mvm"])  # rows with extra seeds
    extra_seeds: list[int] = field(default_factory=lambda: [1, 2])  # run <row>-seed<k> trains with pretrain.seed=k
    eval_dirs: list[str] = field(default_factory=lambda: ["results/eval", "results/ablation/eval"])  # <run>.json, first found
    metrics_dirs: list[str] = field(default_factory=lambda: ["results/metrics", "results/ablation/metrics"])  # pretrain-<run>.json
    sparsify_off_dir: str = "results/ablation/eval-sparsify-off"  # <run>.json evaluated with eval.retrieval.sparsify=false
    speed_bench: str = "results/bench/ablation_speed.json"  # every recipe timed in one run (train.ablation_bench)
    out_dir: str = "results/tables"  # ablation.md, claim.md
    json_dir: str = "results/metrics"  # ablation.json, claim.json
    candidate: str = "smaug"  # the claim: this run ...
    equal_steps: str = "dense"  # ... within `margin` R@1 points of this one (same steps) ...
    equal_time: str = "dense-equal-time"  # ... and above this one (dense for the candidate's wall time)
    margin: float = 2.0  # R@1 points
    bootstrap: int = 20000  # resamples of the test videos for the intervals (seeds: Student's t, eval/claim.py)
    seed: int = 0  # of the bootstrap draws
    decimals: int = 1

    def __post_init__(self) -> None:
        check(bool(self.rows), "rows", "must name at least one run")
        dup = next((r for r in self.rows if self.rows.count(r) > 1), None)
        check(dup is None, "rows", f"{dup!r} is named twice")
        check_seed(self.seed)
        check(all(r in self.rows for r in self.seeded), "seeded", "each must be one of rows")
        check(len(set(self.extra_seeds)) == len(self.extra_seeds), "extra_seeds", "must not repeat a seed")
        for name in ("candidate", "equal_steps", "equal_time"):
            check(getattr(self, name) in self.rows, name, "must be one of rows")
        check(self.margin >= 0, "margin", "must be >= 0")
        check(self.bootstrap >= 100, "bootstrap", "must be >= 100 resamples")
        check(0 <= self.decimals <= 4, "decimals", "must be in [0, 4]")
