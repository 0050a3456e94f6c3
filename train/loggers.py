"""One place that decides where training curves go: DVCLive, TensorBoard, Weights & Biases.

The trainer logs through one object with DVCLive's small API (``step``, ``log_metric``,
``next_step``, ``summary``, ``make_summary``, ``end``, ``log_params``, ``plots_dir``):
:class:`Loggers` forwards each call to every sink that ``log:`` switches on. DVCLive is
pre-training's (``dvc plots`` reads its files); ``log.tensorboard`` adds TensorBoard event files
under ``<results_dir>/tensorboard/<run>``, ``log.wandb: PROJECT`` a Weights & Biases run (its
own ``WANDB_MODE``, e.g. ``offline``, is honoured). Pre-training and fine-tuning both open their
loggers here; only the main rank logs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError
from train.config import LogConfig


class TensorBoardSink:
    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch's writer needs the tensorboard package
            raise ConfigError(f"log.tensorboard: true needs the tensorboard package ({err}); "
                              "pip install tensorboard, or set log.tensorboard: false") from None
        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))

    def log_metric(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(name, float(value), step)

    def log_params(self, params: dict) -> None:
        self.writer.add_text("params", "\n".join(f"{k}: {v}" for k, v in sorted(params.items())), 0)

    def summary(self, values: dict, step: int) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"summary/{k}", float(v), step)

    def end(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, project: str, name: str, folder: Path, resume: bool):
        try:
            import wandb
        except ImportError:
            raise ConfigError(f"log.wandb: {project!r} needs the wandb package, which is not installed; "
                              "pip install wandb, or set log.wandb: null") from None
        folder.mkdir(parents=True, exist_ok=True)
        # WANDB_MODE (online / offline / disabled) is read by wandb itself; offline runs sync later
        self.run = wandb.init(project=project, name=name, dir=str(folder), resume="allow" if resume else None,
                              mode=os.environ.get("WANDB_MODE") or None)

    def log_metric(self, name: str, value: float, step: int) -> None:
        self.run.log({name: float(value)}, step=step)

    def log_params(self, params: dict) -> None:
        self.run.config.update(params, allow_val_change=True)

    def summary(self, values: dict, step: int) -> None:
        for k, v in values.items():
            self.run.summary[k] = v

    def end(self) -> None:
        self.run.finish()


class Loggers:
    """DVCLive's API over several sinks (see the module docstring)."""

    def __init__(self, live: Any = None, sinks: list | None = None):
        self.live = live
        self.sinks = sinks or []
        self.step = 0
        self.summary: dict[str, Any] = {}

    @property
    def plots_dir(self) -> str | None:
        """DVCLive's folder (the trainer trims its rows after a resume); None without DVCLive."""
        return self.live.plots_dir if self.live is not None else None

    def log_params(self, params: dict) -> None:
        if self.live is not None:
            self.live.log_params(params)
        for sink in self.sinks:
            sink.log_params(params)

    def log_metric(self, name: str, value: float) -> None:
        if self.live is not None:
            self.live.step = self.step
            self.live.log_metric(name, value)
        for sink in self.sinks:
            sink.log_metric(name, value, self.step)

    def next_step(self) -> None:
        if self.live is not None:
            self.live.step = self.step
            self.live.next_step()
        self.step += 1

    def make_summary(self) -> None:
        if self.live is not None:
            self.live.summary.update(self.summary)
            self.live.step = self.step
            self.live.make_summary()
        for sink in self.sinks:
            sink.summary(self.summary, self.step)

    def end(self) -> None:
        if self.live is not None:
            self.live.end()
        for sink in self.sinks:
            sink.end()


def check_available(cfg: LogConfig) -> None:
    """Refuse, naming the key, a logger whose package is missing: before any work starts."""
    import importlib.util

    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("log.tensorboard: true needs the tensorboard package, which is not installed; "
                          "pip install tensorboard, or set log.tensorboard: false")
    if cfg.wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"log.wandb: {cfg.wandb!r} needs the wandb package, which is not installed; "
                          "pip install wandb, or set log.wandb: null")


def open_loggers(cfg: LogConfig, results_dir: str | Path, run: str, *, dvclive: bool, resume: bool) -> Loggers:
    """The loggers of one run (call on the main rank only). ``run``: a folder name such as
    ``pretrain-smaug`` or ``finetune-smaug-qa``."""
    results_dir = Path(results_dir)
    live = None
    if dvclive:
        from dvclive import Live

        # dvcyaml=None: dvc.yaml is written by hand, not by DVCLive.
        live = Live(dir=str(results_dir / "dvclive" / run), save_dvc_exp=False, dvcyaml=None, resume=resume)
    sinks: list = []
    if cfg.tensorboard:
        sinks.append(TensorBoardSink(results_dir / "tensorboard" / run))
    if cfg.wandb:
        sinks.append(WandbSink(cfg.wandb, run, results_dir / "wandb", resume))
    return Loggers(live, sinks)
