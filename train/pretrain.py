"""Pre-train SMAUG with one recipe: ``python -m train.pretrain --recipe smaug [key=value ...]``.

Reads ``params.yaml`` (``--params``), deep-merges ``pipeline/recipes/<recipe>.yaml`` and the
``key.path=value`` overrides, then trains for ``pretrain.steps`` optimiser steps on the shards
at ``pretrain.shards`` (or the sources of ``pretrain.sources``) and writes:

* ``<pretrain.out_dir>/<run name>/`` the checkpoint (model.safetensors, optim.pt, state.json),
  rewritten atomically every ``pretrain.ckpt_every`` steps. state.json records the resolved
  configuration and the identity of the shards; a rerun resumes (or, finished, does nothing)
  only when both match, and otherwise stops saying what differs (:func:`train.run.open_run`);
  ``--fresh`` starts over;
* ``<results_dir>/dvclive/pretrain-<run name>/`` DVCLive metrics and loss curves
  (``dvc metrics show`` / ``dvc plots show``);
* ``<results_dir>/metrics/pretrain-<run name>.json`` the cost accounting (:mod:`train.cost`),
  the loader's skipped (corrupt) samples: ``skipped_samples`` and the first ``skipped_keys``, and
  the samples each source gave (``samples_per_source``, with ``sources``; also in the DVCLive
  summary and the last lines printed).

``pretrain.sources`` (several shard sets by weight, :mod:`train.sources`) replaces
``pretrain.shards`` when set.

The run name is the recipe unless ``--run-name NAME`` is given (several runs of one recipe, or
a run on other data beside the built-in benchmark's).
``--equal-time JSON [JSON]`` trains for the wall time the candidate (smaug) needs for
``pretrain.steps``: steps scaled by the two recipes' clips/s, read from ``train.bench``'s JSON or
from the two finished runs' metrics files. The DVC stage ``pretrain-equal-time`` runs
``--recipe dense --run-name dense-equal-time`` with the metrics files, for the same-cost half of
the paper's claim (``results/tables/claim.md``).

Exit codes (:func:`main` returns them; SLURM / submitit wrappers read them):
0 finished; 75 (``EXIT_INTERRUPTED``) stopped by SIGTERM/SIGUSR1/SIGUSR2/SIGINT/SIGHUP (at any
moment, loader workers included; SIGHUP not under ``nohup``: :mod:`train.signals`) after writing
a checkpoint, or before the first step with nothing to save, so requeue and rerun the same
command to continue; 2 a configuration
problem (a bad or unknown key, a run folder made by other settings or data) or a checkpoint that
cannot be loaded, printed as one ``error:`` line; any other exception (a non-finite loss naming
its step and batch keys) propagates.

Data-parallel: run under ``torchrun`` or submitit (``TorchDistributedEnvironment().export()``);
each rank reads its own shard split and takes ``loader.batch_size`` clips per micro-batch, so the
global batch is ``batch_size * accum * WORLD_SIZE``.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line: own the stop signals before the slow imports
    from train.signals import STOP

    STOP.install()

import argparse
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pipeline import cli
from pipeline.config import ConfigError, load_params, section, to_dict, top_level_deterministic, top_level_seed
from pipeline.provenance import PRETRAIN_KEYS, stamp
from pipeline.sections import check_every_section
from train import cost
from train.checkpoint import CheckpointError, read_state, repair
from train.config import LogConfig, PretrainConfig
from train.loggers import check_available, open_loggers
from train.repeatable import make_repeatable
from train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from train.run import code_of_run, data_identity, one_training_per_folder, open_stage_run, stream_from
from train.trainer import EXIT_INTERRUPTED, MachineFault, Trainer, TrainingInterrupted, default_loss

log = logging.getLogger("train.pretrain")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="smaug", help="pipeline/recipes/<name>.yaml (default smaug: params.yaml as it is)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint, start over")
    p.add_argument("--as-stage", action="store_true",
                   help="run as a DVC stage that keeps its checkpoint folder (persist): resume an interrupted "
                        "run only if its settings, data and code are unchanged, else start over (train/run.py)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="after training, draw the sparsification picture of one batch here")
    p.add_argument("--plot-only", action="store_true",
                   help="only draw --plot from the finished checkpoint (no training)")
    p.add_argument("--run-name", default=None, metavar="NAME",
                   help="checkpoint folder, DVCLive folder and metrics file name (default: the recipe)")
    p.add_argument("--equal-time", default=None, nargs="+", metavar="JSON",
                   help="train for as long as the candidate recipe took for pretrain.steps: steps = "
                        "pretrain.steps x this recipe's clips/s / the candidate's. Either train.bench's JSON, "
                        "or two runs' metrics files (the candidate's, then this recipe's), as dvc.yaml does")
    cli.add_config_arguments(p, run_dir=True)
    return cli.parse(p, argv)


# --------------------------------------------------------------------------- config


def throughputs(files: list[str], recipe: str) -> dict:
    """``--equal-time`` files -> {"candidate": name, name: {"clips_per_s": ...}, ...}.

    Two metrics files of finished runs measure what the runs really got, loader included (on 2
    cores the loader's decoding competes with the faster recipe's training for the cores);
    the interleaved benchmark measures the model step alone.
    """
    if len(files) == 1:
        return json.loads(Path(files[0]).read_text())
    if len(files) != 2:
        raise ConfigError("--equal-time: give the benchmark JSON, or the candidate's and this recipe's metrics files")
    cand, ours = (json.loads(Path(f).read_text()) for f in files)
    if ours.get("recipe") != recipe:
        raise ConfigError(f"--equal-time: {files[1]} is a {ours.get('recipe')!r} run, not {recipe!r}")
    return {"candidate": cand.get("recipe"), cand.get("recipe"): {"clips_per_s": cand.get("clips_per_s")},
            recipe: {"clips_per_s": ours.get("clips_per_s")}}


def equal_time_steps(bench: dict, recipe: str, steps: int, warmup: int) -> tuple[int, int]:
    """(steps, warmup) that give ``recipe`` the wall time the bench's candidate needs for ``steps``.

    The paper's claim is twofold: SMAUG matches the dense model at the same number of steps,
    and beats it at the same cost. The cost side needs a dense run that stops when SMAUG's
    budget is spent; ``bench`` holds the two clips/s (see :func:`throughputs` for which
    measurement). The warm-up keeps its share of the run.
    """
    candidate = bench.get("candidate")
    try:
        ours = float(bench[recipe]["clips_per_s"])
        theirs = float(bench[candidate]["clips_per_s"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"--equal-time: the benchmark has no clips_per_s for {recipe!r} and its "
                          f"candidate {candidate!r}") from None
    if ours <= 0 or theirs <= 0:
        raise ConfigError(f"--equal-time: non-positive clips_per_s in the benchmark ({ours}, {theirs})")
    n = max(1, round(steps * ours / theirs))
    w = min(n - 1, round(warmup * n / steps)) if n > 1 else 0
    return n, max(w, 0)


def load_run_config(params_path: str | None, recipe: str, overrides: list[str]) -> dict[str, Any]:
    """Params with the recipe and overrides merged, and every section this run uses built."""
    from train.data import LoaderConfig
    from train.model import ModelConfig

    params = load_params(params_path, recipe=recipe, overrides=overrides)
    pre = section(params, PretrainConfig, "pretrain")
    model = section(params, ModelConfig, "model")
    loader = section(params, LoaderConfig, "loader")
    check_consistent(model, loader)
    seed = top_level_seed(params)
    top_level_deterministic(params)
    return {"params": params, "pretrain": pre, "model": model, "loader": loader,
            "seed": pre.seed if pre.seed is not None else seed, "recipe": recipe, "overrides": list(overrides)}


def check_consistent(model, loader) -> None:
    """The loader must produce what the model was built for."""
    if loader.frames_per_clip != model.video.num_frames:
        raise ConfigError(
            f"model.video.num_frames: {model.video.num_frames} but the loader yields "
            f"{loader.frames_per_clip} frames per clip (loader.num_frames / loader.sampling)"
        )
    if loader.image_size != model.video.image_size:
        raise ConfigError(
            f"model.video.image_size: {model.video.image_size} but loader.image_size is "
            f"{loader.image_size}"
        )
    if loader.max_len > model.text.max_len:
        raise ConfigError(
            f"loader.max_len: {loader.max_len} exceeds model.text.max_len {model.text.max_len}"
        )


# --------------------------------------------------------------------------- main


def train(args: argparse.Namespace, dist: DistInfo) -> int:
    t_main = time.perf_counter()
    run = load_run_config(args.params, args.recipe, args.overrides)
    if args.as_stage:  # the pipeline's later stages' settings too, before hours of training
        check_every_section(run["params"])
    equal_time = None
    if args.equal_time:
        bench = throughputs(args.equal_time, args.recipe)
        steps, warmup = equal_time_steps(bench, args.recipe, run["pretrain"].steps, run["pretrain"].warmup)
        equal_time = {"from": args.equal_time, "of": bench.get("candidate"),
                      "candidate_steps": run["pretrain"].steps, "steps": steps, "warmup": warmup}
        log.info("equal time to %s's %d steps: %s trains %d steps (warm-up %d)", equal_time["of"],
                 run["pretrain"].steps, args.recipe, steps, warmup)
        run = load_run_config(args.params, args.recipe,
                              [*args.overrides, f"pretrain.steps={steps}", f"pretrain.warmup={warmup}"])
    pre: PretrainConfig = run["pretrain"]
    check_available(section(run["params"], LogConfig, "log"))  # a missing logger package: before any work
    recipe, seed = run["recipe"], run["seed"]
    name = args.run_name or recipe
    if pre.threads:
        torch.set_num_threads(pre.threads)
    make_repeatable(top_level_deterministic(run["params"]))
    run_dir = Path(pre.out_dir) / name
    results = Path(pre.results_dir)
    with one_training_per_folder(run_dir, dist):  # a second job on this run is refused, naming the first
        return train_in_folder(args, dist, run, run_dir, results, equal_time=equal_time, t_main=t_main)


def train_in_folder(args: argparse.Namespace, dist: DistInfo, run: dict[str, Any], run_dir: Path, results: Path, *,
                    equal_time: dict | None, t_main: float) -> int:
    """:func:`train`'s work once it holds the run folder."""
    from train.model import SMAUG
    from train.model.smaug import trim_batch

    pre: PretrainConfig = run["pretrain"]
    recipe, seed = run["recipe"], run["seed"]
    name = args.run_name or recipe

    if dist.is_main:  # what an interrupted checkpoint write left: restored or removed
        for what in repair(run_dir):
            log.warning("%s", what)
    barrier(dist)
    identity = same_text_tower(run_identity(run), run_dir, run["model"].text.path)
    status, state, code = open_stage_run(run_dir, identity, fresh=args.fresh, as_stage=args.as_stage, dist=dist)
    if status == "finished":
        log.info("%s already finished at step %s with these settings and shards; nothing to do "
                 "(--fresh to retrain, --run-name NAME for a new run)", run_dir, state.get("step"))
        if dist.is_main:
            metrics_file = results / "metrics" / f"pretrain-{name}.json"
            missing = ""
            if not metrics_file.is_file() and state.get("summary"):
                write_metrics(metrics_file, state["summary"], run_dir)
                missing = " (written from the checkpoint: it was missing)"
            elif not metrics_file.is_file():  # a checkpoint older than the metrics it keeps
                missing = " (missing, and this checkpoint does not keep it: --fresh retrains to measure it)"
            print(f"pretrain {name}: already finished ({state.get('step')} steps)\n  checkpoint: {run_dir}\n"
                  f"  metrics:    {metrics_file}{missing}", flush=True)
        return 0

    if status == "resume":
        run = {**run, "model": text_tower_to_resume(run["model"], run_dir)}
    torch.manual_seed(seed)  # identical initial weights on every rank
    # A resume loads every weight from the checkpoint: the text tower's pretrained file is not needed.
    model = SMAUG(run["model"], text_weights=status != "resume")
    ckpt_state = {"recipe": recipe, "run_name": name, "equal_time": equal_time, "params": run["params"],
                  "model_config": to_dict(run["model"]), "loader_config": to_dict(run["loader"]),
                  "identity": identity, "code": code_of_run(state, code)}

    live = None
    if dist.is_main:  # DVCLive, and TensorBoard / W&B when `log:` asks (train/loggers.py)
        live = open_loggers(section(run["params"], LogConfig, "log"), results, f"pretrain-{name}",
                            dvclive=True, resume=status == "resume")
        live.log_params({"recipe": recipe, "run_name": name, "steps": pre.steps, "lr": pre.lr,
                         "batch_size": run["loader"].batch_size, "accum": pre.accum,
                         "world_size": dist.world_size})

    trainer = Trainer(model, pre, dist=dist, ckpt_dir=run_dir,
                      ckpt_state=ckpt_state, live=live, progress=not args.no_progress,
                      desc=f"pretrain {name}", seed=seed)
    stream = training_stream(trainer, run, state, dist)
    batches = iter(stream)
    if state is not None:
        log.info("resumed %s at step %d", run_dir, trainer.step)

    # FLOPs of one real training step, counted on the first batch before training on it. A
    # fault in that read is agreed on like one in training (under DDP the other ranks would
    # otherwise wait in their first step), and the position before it is the first step's.
    ahead = trainer.extra_state() if trainer.extra_state else None
    first = fault = None
    try:
        first = trim_batch(next(batches))
    except Exception as err:
        fault = err
    try:
        trainer.stop_on_fault("reading the training data", fault, ahead)
    finally:
        fault = None  # no reference cycle through this frame (see Trainer.fit)
    captions = CaptionCheck(run["model"].text.path, run["loader"].max_len) if dist.is_main else None
    flops_first, out = cost.count_step_flops(trainer.model, _to(first, dist.device), default_loss,
                                             autocast_dtype=trainer.autocast_dtype)
    flops_per_clip = flops_first / first["video"].shape[0]

    def chained():
        # Text padding is trimmed here, on the host: on a GPU the longest caption's length
        # would be a device read (a sync) inside the forward.
        for batch in itertools.chain([first], batches):
            if captions is not None:
                captions.add(batch.get("text"))
            yield trim_batch(batch) if batch is not first else batch

    try:
        result = trainer.fit(chained(), position=ahead)
        if captions is not None and not captions.done:  # fewer clips than it samples: check those
            captions.finish()
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        if live is not None:
            live.end()
        return EXIT_INTERRUPTED
    skipped = int(all_reduce_sum(torch.tensor([stream.skipped], dtype=torch.float64, device=dist.device),
                                 dist)[0])  # every rank's loader skips its own samples
    per_source = samples_per_source(stream, pre, dist)
    summary = None
    if dist.is_main:
        summary = cost_summary(run, result, flops_per_clip, dist, t_main)
        summary["run_name"] = name
        summary["params_provenance"] = stamp(run["params"], PRETRAIN_KEYS, recipe=recipe,
                                             overrides=run["overrides"])
        summary["skipped_samples"] = skipped
        summary["skipped_keys"] = stream.skipped_keys
        summary["sources"] = [to_dict(s) for s in pre.source_list()]
        summary["samples_per_source"] = per_source
        if equal_time is not None:
            summary["equal_time"] = equal_time
    # The metrics ride in the finished checkpoint too: if the results disk cannot take the
    # metrics file, the next run of the same command writes it from there.
    trainer.save(finished=True, metrics={"final_loss": result.final_loss}, summary=summary)
    if dist.is_main:
        metrics_file = write_metrics(results / "metrics" / f"pretrain-{name}.json", summary, run_dir)
        for key in ("clips_per_s", "data_wait_frac", "final_loss", "flops_per_clip", "skipped_samples",
                    "samples_per_source"):
            live.summary[key] = summary[key]
        live.step = trainer.step  # next_step() has moved one past the last logged row
        live.make_summary()
        live.end()
        tokens = summary["tokens"]
        resumed = f" ({result.steps} in this session)" if result.steps != summary["steps"] else ""
        print(f"pretrain {name}: {summary['steps']} steps{resumed}, final loss {result.final_loss:.4f}, "
              f"{summary['clips_per_s']:.1f} clips/s; video tokens per clip "
              f"{tokens.get('video_tokens_input', 0):.0f} -> {tokens.get('video_tokens_visible', 0):.0f} visible "
              f"-> {tokens.get('video_tokens_final', 0):.0f} after sparsification\n"
              f"  samples per source: {describe_counts(per_source)}\n"
              f"  checkpoint: {run_dir}\n  metrics:    {metrics_file}", flush=True)
        if args.plot:
            draw_sparsification(trainer.model, first, args.plot)
    return 0


# What decides what a run learns: a checkpoint is resumed only if these match. Threads, logging,
# checkpoint cadence, folders, compilation, gradient checkpointing (recomputation replays the
# same RNG state) and the loader's worker count change how it runs, not what it learns, so they may differ between the first attempt and a resume.
RUN_INDEPENDENT = {
    "pretrain": ("threads", "log_every", "ckpt_every", "out_dir", "results_dir", "compile", "shards",
                 "grad_checkpointing"),
    "loader": ("num_workers", "prefetch", "backend"),
}


def text_tower_to_resume(model_cfg, run_dir: Path):
    """``model_cfg`` with its text tower read from the checkpoint's own copy (``text/``: the
    vocabulary and config; the weights are in model.safetensors) when the folder the command
    names is gone, so an interrupted run resumes with the same command after that folder moved."""
    import dataclasses

    from train.checkpoint import kept_text_folder

    kept = kept_text_folder(model_cfg.text.path, run_dir)
    if kept is None:  # the folder is there, or no copy is kept (building the model names it)
        return model_cfg
    return dataclasses.replace(model_cfg, text=dataclasses.replace(model_cfg.text, path=str(kept)))


def same_text_tower(identity: dict[str, Any], run_dir: Path, path) -> dict[str, Any]:
    """``model.text.path`` is where the text tower lies, not what it is: a run whose tower folder
    moved resumes from the new place when that folder holds the same vocabulary and config as
    the copy the checkpoint keeps (its ``text/`` folder)."""
    try:
        recorded = read_state(run_dir)["identity"]["config"]["model"]["text"]["path"]
        current = identity["config"]["model"]["text"]["path"]
    except (CheckpointError, KeyError, TypeError):  # no run yet, or an older checkpoint: the usual comparison decides
        return identity
    if recorded == current or path is None:
        return identity
    kept = run_dir / "text"
    same = all((kept / f).is_file() and (Path(path) / f).is_file()
               and (kept / f).read_bytes() == (Path(path) / f).read_bytes() for f in ("vocab.txt", "config.json"))
    if same:
        log.info("%s: text tower folder moved (%s -> %s), same vocabulary and config: resuming", run_dir,
                 recorded, path)
        identity["config"]["model"]["text"]["path"] = recorded
    return identity


def run_identity(run: dict[str, Any]) -> dict[str, Any]:
    """The settings and data that made this run (see :func:`train.run.open_run`).

    The data is each source's shards by content (name, size, head hash), so the sources' folder
    paths, like ``pretrain.shards``, may move; their names and weights are settings.
    """
    pre: PretrainConfig = run["pretrain"]
    config = {"seed": run["seed"], "recipe": run["recipe"]}
    for name in ("pretrain", "model", "loader"):
        values = to_dict(run[name])
        for key in RUN_INDEPENDENT.get(name, ()):
            values.pop(key, None)
        config[name] = values
    config["pretrain"].pop("sources")  # a one-source run records what it did before sources existed
    if pre.sources:
        config["pretrain"]["sources"] = [{"name": s.name, "weight": s.weight} for s in pre.sources]
    data = []
    for i, s in enumerate(pre.sources):
        data += data_identity(s.shards, f"pretrain.sources[{i}].shards (source {s.name!r})")
    return {"config": config, "data": data or data_identity(pre.shards, "pretrain.shards")}


def training_stream(trainer: Trainer, run: dict[str, Any], state: dict | None, dist: DistInfo):
    """The batches to train on, from where a checkpoint left off: one loader on
    ``pretrain.shards``, or one per source of ``pretrain.sources`` mixed by weight."""
    from train.data import build_loader
    from train.sources import MixedStream

    pre: PretrainConfig = run["pretrain"]

    def loader_on(shards: str):
        return build_loader(run["loader"], shards, train=True, seed=run["seed"], rank=dist.rank,
                            world_size=dist.world_size, tokenizer_path=run["model"].text.path)

    if not pre.sources:
        return stream_from(trainer, loader_on(pre.shards), state)
    loaders = {s.name: loader_on(s.shards) for s in pre.sources}
    weights = {s.name: s.weight for s in pre.sources}
    log.info("sources, one per batch by weight: %s",
             ", ".join(f"{s.name} {s.weight:g} ({s.shards})" for s in pre.sources))
    return stream_from(trainer, None, state, make_stream=lambda position: MixedStream.resumed(
        loaders, weights, seed=run["seed"], state=position))


def samples_per_source(stream, pre: PretrainConfig, dist: DistInfo) -> dict[str, int]:
    """Samples each source gave the trainer, all ranks together (a one-source run: all of them)."""
    mine = stream.samples if pre.sources else {pre.source_list()[0].name: stream.samples}
    names = list(mine)
    counts = all_reduce_sum(torch.tensor([float(mine[n]) for n in names], dtype=torch.float64,
                                         device=dist.device), dist)
    return {n: int(c) for n, c in zip(names, counts.tolist())}


def describe_counts(counts: dict[str, int]) -> str:
    """``video 4480 (70.0%), images 1920 (30.0%)``."""
    total = sum(counts.values()) or 1
    return ", ".join(f"{n} {c} ({100.0 * c / total:.1f}%)" for n, c in counts.items())


def _to(batch: dict, device: torch.device) -> dict:
    from train.trainer import to_device

    return to_device(batch, device)


def steady_clips_per_s(history: list[dict[str, float]], clips_per_step: int) -> float:
    """Throughput without the first steps (allocation, first-call overheads)."""
    skip = min(len(history) // 10, 5)
    rows = history[skip:] or history
    total = sum(r["step_s"] for r in rows)
    return clips_per_step * len(rows) / total if total > 0 else 0.0


class CaptionCheck:
    """Reads the captions of the first ``want`` training clips as they stream by, then warns once
    if the text tower cannot read many of them (another language or script) or the loader cuts
    many (longer than loader.max_len): both lose words without any error."""

    def __init__(self, tokenizer_path, max_len: int, want: int = 256) -> None:
        self.tokenizer_path, self.max_len, self.want = tokenizer_path, max_len, want
        self.texts: list[str] = []
        self.done = False

    def add(self, texts) -> None:
        if self.done or not texts:
            return
        self.texts += [t for t in texts if isinstance(t, str)]
        if len(self.texts) >= self.want:
            self.finish()

    def finish(self) -> None:
        from train.data.text import load_tokenizer, truncation_warning, unknown_token_warning

        self.done = True
        try:
            tokenizer = load_tokenizer(self.tokenizer_path)
            warnings = [unknown_token_warning(tokenizer, self.texts),
                        truncation_warning(tokenizer, self.texts, self.max_len)]
        except Exception as err:  # a check, never a reason to stop training
            log.warning("caption check skipped: %r", err)
            return
        for warning in warnings:
            if warning:
                log.warning("captions of the first %d training clips: %s", len(self.texts), warning)


def write_metrics(path: Path, summary: dict[str, Any], run_dir: Path) -> Path:
    """The run's metrics file; a full or broken results disk is one clear error that says the
    finished checkpoint keeps them, so rerunning the same command writes them."""
    try:
        return cost.write_json(path, summary)
    except OSError as err:
        try:
            Path(f"{path}.tmp").unlink(missing_ok=True)  # give back what the partial write took
        except OSError:  # the folder itself is unusable (not a directory, read-only)
            pass
        raise MachineFault(f"{path}: not written ({err}); the run finished and its checkpoint {run_dir} "
                           "keeps these metrics: free space and rerun the same command to write them") from err


def cost_summary(run, result, flops_per_clip, dist, t_main) -> dict[str, Any]:
    pre: PretrainConfig = run["pretrain"]
    batch = run["loader"].batch_size
    clips_per_step = batch * pre.accum * dist.world_size
    summary = {
        "recipe": run["recipe"],
        "steps": result.total_steps or result.steps,   # the whole run, resumed sessions included
        "clips_per_step": clips_per_step,
        "world_size": dist.world_size,
        "device": str(dist.device),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "flops_per_clip": flops_per_clip,
        "flops_per_step": flops_per_clip * clips_per_step,
        "clips_per_s": steady_clips_per_s(result.history, clips_per_step),
        "clips_per_s_all_steps": result.clips_per_s,
        "train_wall_s": result.total_wall_s or result.wall_s,  # the whole run (to its last step)
        "train_cpu_s": result.cpu_s,  # this process's CPU seconds (not loader workers)
        "load_average": os.getloadavg()[0],  # other work on the machine when the run ended
        "wall_s": time.perf_counter() - t_main,
        "data_wait_s": result.data_wait_s,
        "data_wait_frac": result.data_wait_frac,
        "peak_memory_bytes": cost.peak_memory_bytes(dist.device),
        "peak_memory_kind": "cuda max_memory_allocated" if dist.device.type == "cuda"
        else "process max RSS (getrusage)",
        # per clip, from ModelOutput.stats: video_tokens_input / _visible (after masking) /
        # _final (after sparsification), text_tokens, mlm_masked_tokens
        "tokens": {k: v for k, v in result.stats.items() if "tokens" in k},
        "model_stats": {k: v for k, v in result.stats.items() if "tokens" not in k},
        "final_loss": result.final_loss,
        "final_losses": final_losses(result.history),
    }
    if summary["steps"] != result.steps:  # resumed: what this last session did, beside the totals
        summary["steps_this_session"] = result.steps
        summary["train_wall_s_this_session"] = result.wall_s
    return summary


def final_losses(history: list[dict[str, float]], share: float = 0.1) -> dict[str, float]:
    """Each objective's loss averaged over the last ``share`` of the steps (one step's loss is
    too noisy to compare with VTM's 1:2 prior of 0.6365, as the tables do)."""
    rows = history[-max(1, int(len(history) * share)):] if history else []
    names = sorted({k for r in rows for k in r if k.startswith("loss_")})
    out = {k[len("loss_"):]: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in names}
    return {**out, "window_steps": len(rows)} if rows else {}


def draw_sparsification(model, batch: dict, path: str) -> None:
    try:
        from train.model.visualize import plot_sparsification
    except ImportError as err:
        log.warning("no sparsification picture: %s", err)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        plot_sparsification(model, _to(batch, device), path)
    log.info("sparsification picture: %s", path)


def plot_only(args: argparse.Namespace) -> int:
    from train.checkpoint import load_model
    from train.data import build_loader

    if not args.plot:
        raise ConfigError("--plot-only needs --plot PATH")
    run = load_run_config(args.params, args.recipe, args.overrides)
    model, _ = load_model(Path(run["pretrain"].out_dir) / (args.run_name or args.recipe))
    # one batch of the first source (pretrain.shards, or pretrain.sources[0])
    loader = build_loader(run["loader"], run["pretrain"].source_list()[0].shards, train=False, seed=run["seed"])
    draw_sparsification(model, next(iter(loader)), args.plot)
    return 0


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    """Entry point for the command line and for submitit jobs (``main(argv)``): see module doc."""
    from train.checkpoint import CheckpointError, CheckpointWriteError
    from train.run import fail_on_fault
    from train.signals import STOP

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.print_config:
        run = load_run_config(args.params, args.recipe, args.overrides)  # every value checked
        section(run["params"], LogConfig, "log")
        if args.as_stage:  # as train() would: the SLURM launcher's check before sbatch runs this
            check_every_section(run["params"])
        return cli.print_config(load_params(args.params, recipe=args.recipe, overrides=args.overrides))
    try:
        if args.plot_only:
            return plot_only(args)
        with STOP:  # before any loader worker exists: see train.signals
            dist = init_distributed(args.device)
            try:
                return train(args, dist)
            finally:
                shutdown(dist)
    except CheckpointError as err:  # a full disk is the machine's (1), a damaged checkpoint the input's (2)
        return cli.fail(err, 1 if isinstance(err, CheckpointWriteError) else cli.EXIT_CONFIG)
    except (RuntimeError, OSError) as err:
        return fail_on_fault(err, "pretrain.lr")


if __name__ == "__main__":
    sys.exit(main())
