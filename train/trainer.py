"""The training loop, shared by pre-training and fine-tuning.

One optimiser step is ``accum`` micro-batches: each is moved to the device, run through
``loss_fn(model, batch)`` under autocast (bf16 on GPU, fp16 with gradient scaling on a GPU
without bf16, fp32 on CPU unless configured), and back-propagated; then the gradients are
unscaled and clipped, AdamW steps, and the schedule sets the next rate (counting applied
updates: a step the fp16 scaler skipped moves it on by nothing). ``grad_checkpointing``
recomputes the transformer blocks in backward (:func:`train.model.layers.set_grad_checkpointing`).
Under DDP every micro-batch but the last skips the gradient all-reduce (``no_sync``).

What makes it safe to run unattended:

* a non-finite loss or gradient norm stops the run with :class:`NonFiniteLossError`, naming
  the step and the sample keys of the batch, before the weights are touched;
* SIGTERM, SIGUSR1 or SIGUSR2 (SLURM pre-emption / time limit, ``scancel --signal``, submitit),
  SIGINT (Ctrl-C) or SIGHUP (a closed terminal or ssh session) finishes the step in flight,
  writes a checkpoint and raises :class:`TrainingInterrupted`; the programs turn that into exit
  code :data:`EXIT_INTERRUPTED` (75, EX_TEMPFAIL: retry later). A progress bar whose terminal
  or pipe is gone is dropped, not fatal (:func:`on_progress_bar`).
  A signal that arrived before the loop (the program holds :data:`train.signals.STOP` from its
  start) stops it before the first step, with nothing new to save. See :mod:`train.signals`;
* checkpoints are atomic (:mod:`train.checkpoint`) and hold the RNG state, so a resumed run
  continues the loss curve it left off; rows DVCLive logged after the checkpoint (a kill -9)
  are dropped on resume, so every step is in the curve once;
* with ``seed`` given, every micro-batch draws its randomness (masks, hard negatives, dropout)
  from a seed fixed by (seed, step, global micro-batch index) (:func:`micro_batch_seed`): resumed
  runs draw exactly what uninterrupted ones drew, and DDP over ``W`` ranks draws exactly what one
  process accumulating ``W`` micro-batches draws.

Data parallel: ``dist`` (:func:`train.distributed.init_distributed`) wraps the model in DDP; the
logged loss is the mean over ranks; a stop signal or a non-finite value on any rank stops all.

Reuse for fine-tuning: build a :class:`~train.config.TrainerConfig` from your own section and
pass a ``loss_fn(model, batch)`` returning either a scalar tensor or an object with ``loss``
(and optionally ``losses`` and ``stats`` dicts, as :class:`train.model.ModelOutput` has)::

    trainer = Trainer(model, TrainerConfig(steps=500, lr=1e-4), loss_fn=my_loss,
                      ckpt_dir="models/finetune/msrvtt", desc="finetune msrvtt")
    result = trainer.fit(batches)        # any iterator of batch dicts
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from train import checkpoint as ckpt
from train.config import TrainerConfig
from train.distributed import DistInfo, all_reduce_sum
from train.schedule import WarmupCosine
from train.signals import EXIT_INTERRUPTED, STOP, STOP_SIGNALS  # noqa: F401 (re-exported)


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN/inf; the message names the step and batch."""


class MachineFault(RuntimeError):
    """Reading the data or writing the training log failed with an error of the machine (a
    shard gone, a full disk); the message says what, and which checkpoint to resume from."""


class TrainingInterrupted(Exception):
    """A stop signal arrived; a checkpoint at ``step`` was written."""

    def __init__(self, step: int, signum: int, checkpoint: Path | None) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}; checkpoint: {checkpoint}")
        self.step, self.signum, self.checkpoint = step, signum, checkpoint


# --------------------------------------------------------------------------- optimiser


NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d,
                    nn.BatchNorm3d, nn.RMSNorm)
# Learned tokens and scalars that AdamW's decay would pull to zero for no benefit.
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "temp", "temperature", "logit_scale",
                  "log_temperature")
# Modules whose every parameter is a position embedding (e.g. ``video.pos.spatial``).
NO_DECAY_PARENTS = ("pos", "pos_embed", "position_embeddings", "position_embedding")


def wants_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Weight decay only for weight matrices: not norms, biases, embeddings, tokens, scalars."""
    parts = name.split(".")
    leaf = parts[-1]
    if any(p in NO_DECAY_PARENTS for p in parts[:-1]):
        return False
    if param.ndim < 2 or isinstance(module, NO_DECAY_MODULES):
        return False
    if leaf in NO_DECAY_NAMES or leaf.endswith(("_embed", "_embedding", "_embeddings", "_token")):
        return False
    return True


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups, ``decay`` and ``no_decay``; frozen parameters are left out."""
    decay, no_decay = [], []
    decay_names, no_decay_names = [], []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for leaf, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{leaf}" if mod_name else leaf
            if wants_decay(name, p, module):
                decay.append(p)
                decay_names.append(name)
            else:
                no_decay.append(p)
                no_decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def build_optimizer(model: nn.Module, cfg: TrainerConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; modules a model names in ``lr_scales()`` (e.g. SMAUG's
    text tower at ``model.text.lr_scale``, also inside a task model) get their own groups at
    that multiple of the rate."""
    groups = param_groups(model, cfg.weight_decay)
    for g in groups:
        g.pop("names")  # names are for inspection; optimiser state_dicts must stay tensors+primitives
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    for owner in model.modules():  # the model itself, or the SMAUG inside a task model
        lr_scales = getattr(owner, "lr_scales", None)
        for module, scale in (lr_scales() if callable(lr_scales) else {}).items():
            scale_lr_of(optimizer, module, scale)
    return optimizer


def scale_lr_of(optimizer: torch.optim.Optimizer, module: nn.Module, scale: float) -> None:
    """Move ``module``'s parameters into their own param groups with ``lr_scale`` (the
    schedule multiplies each group's rate by it): a new head learns faster than the body."""
    ids = {id(p) for p in module.parameters()}
    for group in list(optimizer.param_groups):
        mine = [p for p in group["params"] if id(p) in ids]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        optimizer.add_param_group({"params": mine, "weight_decay": group["weight_decay"],
                                   "lr_scale": group.get("lr_scale", 1.0) * scale})


# --------------------------------------------------------------------------- helpers


def resolve_precision(precision: str, device: torch.device,
                      bf16_supported: bool | None = None) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    ``auto``: bf16 on a GPU that has it; fp16 on one that has not (V100-class GPUs, where bf16
    is emulated and slow), which the trainer pairs with a gradient scaler; fp32 on CPU (CPU
    autocast is slower than fp32 on most CPUs). ``bf16_supported``: None asks the GPU.
    """
    if precision == "auto":
        if device.type != "cuda":
            return None
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16_supported else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


# fp16 gradient scaling skips a step whose gradients overflowed and halves the scale; so many
# skips in a row take the scale from 2**16 below 2**-8, and what overflows then is not the
# scale but the model: stop with NonFiniteLossError rather than skip forever.
MAX_CONSECUTIVE_SKIPS = 24


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


def batch_size_of(batch: dict[str, Any]) -> int:
    for key in ("video", "input_ids"):
        if torch.is_tensor(batch.get(key)):
            return int(batch[key].shape[0])
    for v in batch.values():
        if torch.is_tensor(v) and v.ndim > 0:
            return int(v.shape[0])
    raise ValueError("cannot tell the batch size: no tensor in the batch")


def default_loss(model: nn.Module, batch: dict[str, Any]):
    """Pre-training: the model computes its own weighted loss (``ModelOutput``)."""
    return model(batch)


def split_output(out: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    if torch.is_tensor(out):
        return out, {}, {}
    return out.loss, dict(getattr(out, "losses", {}) or {}), dict(getattr(out, "stats", {}) or {})


def micro_batch_seed(seed: int, step: int, index: int) -> int:
    """The RNG seed for global micro-batch ``index`` of optimiser step ``step``.

    Seeding every micro-batch from (seed, step, index) makes the random draws inside the model
    (masks, hard negatives, dropout) a function of where the batch sits in the run, not of what
    ran before. So a resumed run draws what the uninterrupted run drew, and ``world_size`` ranks
    with ``accum`` micro-batches each draw what one process with ``world_size * accum``
    micro-batches draws (index = rank * accum + i): DDP equals gradient accumulation exactly.
    """
    return (seed * 1_000_003 + step * 1009 + index) % (2**63 - 1)


@dataclass
class FitResult:
    steps: int
    wall_s: float
    clips: int
    clips_per_s: float
    data_wait_s: float
    data_wait_frac: float
    final_loss: float
    cpu_s: float = 0.0
    total_steps: int = 0          # steps of the whole run, earlier sessions included (resumes)
    total_wall_s: float = 0.0     # training wall time of the whole run up to its last step
    history: list[dict[str, float]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- the loop


class Trainer:
    """Owns the model wrapper, AdamW, the schedule and the loop; see the module docstring.

    ``ckpt_dir``: the checkpoint folder (rewritten atomically every ``ckpt_every`` steps and at
    the end). ``ckpt_state``: JSON-able facts for state.json (recipe, params, model_config).
    ``live``: a ``dvclive.Live`` or ``train.loggers.Loggers`` (main rank only) or None. ``step_hook(trainer, row)`` is
    called after every optimiser step with the logged row (cost accounting, tests).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainerConfig,
        *,
        loss_fn: Callable[[nn.Module, dict], Any] = default_loss,
        dist: DistInfo | None = None,
        ckpt_dir: str | Path | None = None,
        ckpt_state: dict[str, Any] | None = None,
        live: Any = None,
        progress: bool = True,
        desc: str = "train",
        step_hook: Callable[["Trainer", dict], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        self.loss_fn = loss_fn
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self.ckpt_state = ckpt_state or {}
        self.live = live if self.dist.is_main else None
        self.progress = progress and self.dist.is_main
        self.desc = desc
        self.step_hook = step_hook
        self.seed = seed
        # Called at every checkpoint; its dict (tensors / plain values) goes into optim.pt.
        self.extra_state: Callable[[], dict] | None = None
        # Under DDP, what the checkpoint records of every rank's extra state (e.g. counts summed
        # over ranks); every rank calls it at each save, so it may be a collective.
        self.extra_over_ranks: Callable[[dict], dict] | None = None
        self.resumed_extra: dict = {}
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        # fp16's narrow range underflows small gradients: scale the loss up, unscale before
        # clipping, skip steps that overflowed. A no-op (enabled=False) for bf16 and fp32.
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.autocast_dtype is torch.float16)
        self.skipped_steps = 0  # optimiser steps the scaler skipped (overflowed fp16 gradients)
        self._skips_in_a_row = 0

        self.model = model.to(self.device)  # the plain module (checkpoints, evaluation)
        if cfg.grad_checkpointing:
            from train.model.layers import set_grad_checkpointing

            set_grad_checkpointing(self.model, True)
        self.optimizer = build_optimizer(self.model, cfg)
        self.schedule = WarmupCosine(self.optimizer, lr=cfg.lr, min_lr=cfg.min_lr,
                                     warmup=cfg.warmup, steps=cfg.steps)
        wrapped: nn.Module = self.model
        if self.dist.enabled:
            # Recipes switch objectives (and their heads' use) off, so some parameters may get
            # no gradient in a step; DDP must then not wait for them.
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if cfg.compile:
            wrapped = torch.compile(wrapped)
        self.train_model = wrapped
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.wall_before_s = 0.0     # training wall time of earlier sessions (from the checkpoint)
        self._fit_started: float | None = None

    # ----------------------------------------------------------------- state

    def save(self, folder: Path | None = None, *, position: dict[str, Any] | None = None,
             **state: Any) -> Path | None:
        """Checkpoint (main rank writes, every rank waits). ``position``: the data position to
        record instead of :attr:`extra_state`'s current one (a step's start, when its batches
        were read but not trained on)."""
        folder = folder or self.ckpt_dir
        if folder is None:
            return None
        failed: Exception | None = None
        extra = position if position is not None else self.extra_state() if self.extra_state else None
        if extra is not None and self.dist.enabled and self.extra_over_ranks is not None:
            extra = self.extra_over_ranks(extra)  # every rank is here (see stop_on_fault)
        if self.dist.is_main:
            try:
                ckpt.save_checkpoint(folder, self.model, optimizer=self.optimizer,
                                     schedule=self.schedule, scaler=self.scaler,
                                     skipped_steps=self.skipped_steps, step=self.step,
                                     state={**self.ckpt_state, "train_wall_s": self.wall_so_far(), **state},
                                     extra=extra)
            except Exception as err:  # every kind: the other ranks must hear of it below
                failed = err
        try:
            if self.dist.enabled:
                # The all-reduce is the barrier, and it tells every rank whether the write
                # worked: a main rank that raised alone would leave the others here for ever.
                flag = torch.tensor([float(failed is not None)], dtype=torch.float64, device=self.device)
                if all_reduce_sum(flag, self.dist)[0] > 0 and failed is None:
                    raise ckpt.CheckpointWriteError(
                        f"{folder}: checkpoint of step {self.step} not written (rank 0, which writes "
                        "checkpoints, names why); the previous checkpoint is kept")
            if failed is not None:
                raise failed
        finally:
            failed = None  # the raised error's traceback holds this frame: no cycle (see fit)
        return folder

    def wall_so_far(self) -> float:
        """Training wall time of the run up to now, earlier (resumed) sessions included."""
        running = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.wall_before_s + running

    def stop_on_fault(self, doing: str, fault: Exception | None,
                      position: dict[str, Any] | None = None) -> None:
        """Stop every rank, with a checkpoint of the steps done, if ``fault`` happened on any.

        Under DDP the ranks first agree (one all-reduce of who failed) at this point, which all
        of them reach at the same step: a rank that stopped alone would leave the others waiting
        in their next collective (on NCCL until its watchdog), with nothing saved.
        ``position``: the data position at this step's start (batches read but not trained on).
        An ``OSError`` (a shard gone, a full disk) becomes :class:`MachineFault`; any other error
        is raised as it is, after the checkpoint.
        """
        try:
            note = ""
            if self.dist.enabled:
                failed = torch.zeros(self.dist.world_size, dtype=torch.float64, device=self.device)
                failed[self.dist.rank] = float(fault is not None)
                ranks = [int(r) for r in all_reduce_sum(failed, self.dist).nonzero().flatten()]
                if not ranks:
                    return
                if len(ranks) > 1 or fault is None:
                    note = f" (ranks that failed: {', '.join(map(str, ranks))}; each names its cause)"
            elif fault is None:
                return
            if fault is None or isinstance(fault, OSError):
                raise self._machine_fault(doing, fault or OSError("another rank failed"), note=note,
                                          position=position) from fault
            self._machine_fault(doing, OSError(str(fault)), position=position)  # the checkpoint
            raise fault
        finally:
            fault = None  # the raised error's traceback holds this frame: no cycle (see fit)

    def _machine_fault(self, doing: str, err: OSError, position: dict[str, Any] | None = None,
                       note: str = "") -> MachineFault:
        """Checkpoint what was trained so far (a full results disk need not cost the steps since
        the last checkpoint) and say how to go on. Every rank calls it (the save needs them all)."""
        where = f"{doing} failed after step {self.step}"
        where += f" on rank {self.dist.rank}" if self.dist.enabled else ""
        where += f": {err}{note}"
        try:
            path = self.save(finished=False, position=position) if self.step else None
        except (ckpt.CheckpointError, OSError) as ck:  # the fault that stopped the run stays named
            return MachineFault(f"{where}; and no checkpoint could be written: {ck}")
        kept = f"checkpoint of step {self.step} written to {path}" if path else "no checkpoint to write"
        return MachineFault(f"{where}; {kept}: fix that and rerun the same command to resume")

    def resume(self, folder: str | Path) -> int:
        """Load a checkpoint written by :meth:`save`; returns the step to continue from.

        What :attr:`extra_state` stored (e.g. the data position) is in ``self.resumed_extra``.
        """
        training = ckpt.resume(folder, self.model, self.optimizer, self.schedule, self.scaler)
        self.step = int(training["step"])
        self.skipped_steps = int(training.get("skipped_steps", 0))
        self.resumed_extra = dict(training.get("extra") or {})
        try:
            self.wall_before_s = float(ckpt.read_state(folder).get("train_wall_s") or 0.0)
        except (ckpt.CheckpointError, TypeError, ValueError):
            self.wall_before_s = 0.0
        plots_dir = getattr(self.live, "plots_dir", None)  # DVCLive's; TensorBoard alone has none
        if plots_dir is not None:
            forget_rows_after(Path(plots_dir), self.step)
        return self.step

    @property
    def schedule_step(self) -> int:
        """Where the lr schedule stands: optimiser updates applied so far. Steps the fp16 scaler
        skipped changed no weight, so they do not use up warm-up or decay (the loop still
        counts them, so a run takes ``steps`` batches and the data position is unchanged)."""
        return self.step - self.skipped_steps

    # ----------------------------------------------------------------- one step

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, micro_batches: list[dict[str, Any]]) -> dict[str, float]:
        """Forward/backward over the micro-batches, then clip and step. Returns the step's row."""
        model = self.train_model
        model.train()
        n = len(micro_batches)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        # Loss parts and stats stay tensors until the step is done: converting each to a float
        # per micro-batch would make the host wait for the device every time.
        parts: dict[str, Any] = defaultdict(float)
        stats: dict[str, Any] = defaultdict(float)
        keys: list[str] = []
        for i, batch in enumerate(micro_batches):
            keys.extend(str(k) for k in batch.get("key", []))
            batch = to_device(batch, self.device)
            if self.seed is not None:
                torch.manual_seed(micro_batch_seed(self.seed, self.step, self.dist.rank * n + i))
            sync = i == n - 1
            no_sync = model.no_sync if (self.dist.enabled and not sync and hasattr(model, "no_sync")) \
                else contextlib.nullcontext
            with no_sync():
                with self._autocast():
                    loss, losses, st = split_output(self.loss_fn(model, batch))
                self.scaler.scale(loss.float() / n).backward()
            loss_sum += loss.detach().double()
            for k, v in losses.items():
                parts[k] = parts[k] + v.detach().float() / n
            for k, v in st.items():
                if torch.is_tensor(v) and v.numel():
                    stats[k] = stats[k] + v.detach().float().mean() / n
                elif isinstance(v, (int, float)):
                    stats[k] += float(v) / n

        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.cfg.clip if self.cfg.clip > 0 else float("inf")
        # Clip the true gradients: divide the scale out first (a no-op without fp16 scaling).
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)

        # One all-reduce carries the loss and the stop conditions, so every rank decides alike.
        # Under fp16 scaling a non-finite gradient is an overflow the scaler handles (skip the
        # step, lower the scale), unless it keeps happening; without it, it stops the run.
        grad_bad = not torch.isfinite(grad_norm)
        scaled = self.scaler.is_enabled()
        too_many = self._skips_in_a_row + 1 >= MAX_CONSECUTIVE_SKIPS
        local_bad = float(not torch.isfinite(loss_sum)) + float(grad_bad and (not scaled or too_many))
        flags = torch.tensor([float(loss_sum) if math.isfinite(float(loss_sum)) else 0.0,
                              local_bad, float(self._stop.signum is not None)
                              if hasattr(self, "_stop") else 0.0, float(grad_bad)],
                             dtype=torch.float64, device=self.device)
        all_reduce_sum(flags, self.dist)
        if flags[1] > 0:
            self.optimizer.zero_grad(set_to_none=True)
            where = f" on rank {self.dist.rank}" if self.dist.enabled else ""
            what = "loss" if not torch.isfinite(loss_sum) else "gradient norm"
            if scaled and torch.isfinite(loss_sum):
                what += f" in {MAX_CONSECUTIVE_SKIPS} fp16 steps in a row (gradient scale " \
                        f"{self.scaler.get_scale():g})"
            if local_bad:
                raise NonFiniteLossError(
                    f"non-finite {what} ({float(loss_sum) / n:g}, grad norm {float(grad_norm):g}) "
                    f"in step {self.step + 1} (after {self.step} done){where}; batch keys: {keys}"
                )
            raise NonFiniteLossError(f"non-finite loss on another rank in step {self.step + 1} "
                                     f"(after {self.step} done)")

        # scaler.step skips the update when the unscaled gradients hold inf/nan (every rank alike:
        # DDP has all-reduced them); update() then halves the scale, or grows it after a run of
        # good steps.
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        skipped = bool(flags[3] > 0)
        self.skipped_steps += skipped
        self._skips_in_a_row = self._skips_in_a_row + 1 if skipped else 0
        row = {"loss": float(flags[0]) / (n * self.dist.world_size),
               "grad_norm": float(grad_norm), "skipped": float(skipped)}
        if scaled:
            row["grad_scale"] = float(self.scaler.get_scale())
        row.update({f"loss_{k}": float(v) for k, v in parts.items()})
        row.update({f"stats_{k}": float(v) for k, v in stats.items()})
        self._stop_everywhere = flags[2] > 0
        return row

    # ----------------------------------------------------------------- the loop

    def fit(self, batches: Iterable[dict[str, Any]], *, steps: int | None = None,
            position: dict[str, Any] | None = None) -> FitResult:
        """Train from ``self.step`` to ``steps`` (default ``cfg.steps``) on ``batches``.

        ``batches`` must yield this rank's micro-batches from the current position on (after a
        resume, the caller skips what was consumed; see ``train.pretrain``). ``position``: the
        data position before the first batch ``batches`` yields, when the caller read it ahead
        (``train.pretrain`` counts the FLOPs of one batch first), as :attr:`extra_state` gives it.
        """
        steps = self.cfg.steps if steps is None else steps
        it: Iterator[dict[str, Any]] = iter(batches)
        ahead = position
        start_step = self.step
        window: dict[str, list[float]] = defaultdict(list)
        totals = defaultdict(float)
        stats_sum: dict[str, float] = defaultdict(float)
        t_start, c_start = time.perf_counter(), time.process_time()
        self._fit_started = t_start
        bar = open_progress_bar(steps, start_step, self.desc) if self.progress else None
        last_row: dict[str, float] = {}
        self._stop_everywhere = False
        with STOP as self._stop:
            try:
                if self.step < steps and self._stop_asked_everywhere():
                    # Stopped before the first step: nothing new to save.
                    path = self.ckpt_dir if start_step and self.ckpt_dir is not None else None
                    raise TrainingInterrupted(self.step, self._stop.signum or signal.SIGTERM, path)
                while self.step < steps:
                    t0 = time.perf_counter()
                    lr = self.schedule.apply(self.schedule_step)
                    self._set_model_step()
                    # Where the data stood before this step's batches: a fault after some of
                    # them were read (accum > 1, or on another rank) checkpoints this position,
                    # so the resumed run reads them again.
                    if ahead is not None:
                        position, ahead = ahead, None
                    elif self.extra_state and (self.cfg.accum > 1 or self.dist.enabled):
                        position = self.extra_state()
                    else:
                        position = None
                    micro, wait, fault = [], 0.0, None
                    for _ in range(self.cfg.accum):
                        tw = time.perf_counter()
                        try:
                            micro.append(next(it))
                        except StopIteration:
                            fault = RuntimeError(f"the batch iterator ran out at step {self.step} of "
                                                 f"{steps}; give an endless (or long enough) iterator")
                            break
                        except Exception as err:  # ShardUnavailable (an OSError), a killed worker, ...
                            fault = err
                            break
                        wait += time.perf_counter() - tw
                    try:
                        self.stop_on_fault("reading the training data", fault, position)
                    finally:
                        # The error's traceback holds this frame: a local naming the error too
                        # is a cycle that keeps the loader's workers alive until exit, which
                        # then waits on them for ever (they ignore SIGTERM; see train.signals).
                        fault = None
                    row = self.train_step(micro)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                    clips = sum(batch_size_of(b) for b in micro) * self.dist.world_size
                    self.step += 1
                    row.update(step=self.step, lr=lr, step_s=dt, data_wait_s=wait,
                               clips_per_s=clips / dt if dt > 0 else 0.0)
                    self.history.append(row)
                    last_row = row
                    totals["clips"] += clips
                    totals["wait"] += wait
                    totals["time"] += dt
                    for k, v in row.items():
                        window[k].append(v)
                        if k.startswith("stats_"):
                            stats_sum[k[len("stats_"):]] += v
                    if self.step_hook is not None:
                        self.step_hook(self, row)
                    bar = on_progress_bar(bar, show_step, row, wait / dt if dt > 0 else None)
                    if self.step % self.cfg.log_every == 0 or self.step == steps:
                        log_fault = None
                        try:
                            self._log(window)  # main rank only
                        except OSError as err:  # a full or gone results disk
                            log_fault = err
                        window.clear()
                        try:
                            self.stop_on_fault("writing the training log", log_fault)
                        finally:
                            log_fault = None  # no cycle through this frame (see above)
                    if self._stop_everywhere:
                        signum = self._stop.signum or signal.SIGTERM
                        path = self.save(interrupted=True, finished=False)
                        raise TrainingInterrupted(self.step, signum, path)
                    if (self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0
                            and self.step < steps):
                        path = self.save(finished=False)
                        if self._stop.signum is not None and not self.dist.enabled:
                            # Asked while writing it: that checkpoint is the one to stop at.
                            raise TrainingInterrupted(self.step, self._stop.signum, path)
            finally:
                on_progress_bar(bar, lambda b: b.close())
        wall = time.perf_counter() - t_start
        done = self.step - start_step
        return FitResult(
            steps=done,
            wall_s=wall,
            clips=int(totals["clips"]),
            clips_per_s=totals["clips"] / totals["time"] if totals["time"] > 0 else 0.0,
            data_wait_s=totals["wait"],
            data_wait_frac=totals["wait"] / totals["time"] if totals["time"] > 0 else 0.0,
            final_loss=last_row.get("loss", float("nan")),
            cpu_s=time.process_time() - c_start,
            total_steps=self.step,
            total_wall_s=self.wall_before_s + wall,
            history=list(self.history),
            stats={k: v / done for k, v in stats_sum.items()} if done else {},
        )

    def _set_model_step(self) -> None:
        """Tell a model with step-dependent behaviour (SMAUG's sparsification warm-up,
        ``set_train_step``) which optimiser step comes next; like the lr, a pure function of the
        step, so a resumed run continues where it left off."""
        hook = getattr(self.model, "set_train_step", None)
        if callable(hook):
            hook(self.step)

    def _stop_asked_everywhere(self) -> bool:
        """Whether any rank has a stop request (one all-reduce, so all ranks agree)."""
        flag = torch.tensor([float(self._stop.signum is not None)], dtype=torch.float64,
                            device=self.device)
        return bool(all_reduce_sum(flag, self.dist)[0] > 0)

    def _log(self, window: dict[str, list[float]]) -> None:
        if self.live is None or not window.get("step"):
            return
        step_time = sum(window["step_s"])
        self.live.step = int(window["step"][-1])
        self.live.log_metric("train/loss", window["loss"][-1])
        for k, vals in window.items():
            if k.startswith("loss_"):
                self.live.log_metric(f"train/{k}", vals[-1])
            elif k.startswith("stats_"):
                self.live.log_metric(f"stats/{k[len('stats_'):]}", sum(vals) / len(vals))
        self.live.log_metric("train/lr", window["lr"][-1])
        self.live.log_metric("train/grad_norm", window["grad_norm"][-1])
        clips = sum(c * s for c, s in zip(window["clips_per_s"], window["step_s"]))
        self.live.log_metric("perf/clips_per_s", clips / step_time if step_time else 0.0)
        self.live.log_metric("perf/step_s", step_time / len(window["step_s"]))
        self.live.log_metric("perf/data_wait_s", sum(window["data_wait_s"]) / len(window["step_s"]))
        self.live.log_metric("perf/data_wait_frac",
                             sum(window["data_wait_s"]) / step_time if step_time else 0.0)
        self.live.next_step()


def open_progress_bar(steps: int, start_step: int, desc: str):
    """The tqdm bar of a run, or None when its stream cannot take one (see :func:`on_progress_bar`)."""
    from tqdm import tqdm

    try:
        return tqdm(total=steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True)
    except OSError:
        return None


def on_progress_bar(bar, write: Callable[..., Any], *args: Any):
    """``write(bar, *args)`` on a live bar (a step shown, the bar closed); returns the bar, or
    None once a write has failed: the run goes on without one.

    The bar writes to the terminal or pipe the run was started from, which can go away while the
    run goes on: a hung-up terminal answers EIO (tqdm passes on every error but that one), a pipe
    whose reader died (``| tee log`` closed with the terminal) EPIPE. A progress bar must not end
    the run, nor, after a SIGHUP, cost it the checkpoint it is about to write (:mod:`train.signals`).
    """
    if bar is None:
        return None
    try:
        write(bar, *args)
    except OSError:
        bar.disable = True  # tqdm's close() (and its __del__) write nothing more
        return None
    return bar


def show_step(bar, row: dict[str, float], waited: float | None) -> None:
    """One step on the bar: loss, clips/s and the share of the step spent waiting for data."""
    bar.update(1)
    bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}",
                    wait=f"{waited:.0%}" if waited is not None else "-")


def forget_rows_after(plots_dir: Path, step: int) -> None:
    """Drop the rows of DVCLive's metric files (``plots/metrics/**.tsv``) beyond ``step``.

    A run killed after logging a step but before checkpointing it logs that step again when
    it resumes; without this the loss curve would hold it twice.
    """
    for path in sorted((plots_dir / "metrics").rglob("*.tsv")):
        with path.open(newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if len(r) > col and int(float(r[col])) <= step]
        if len(kept) < len(rows):
            tmp = path.with_suffix(".tsv.tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)
            tmp.replace(path)
