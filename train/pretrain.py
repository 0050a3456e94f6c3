"""Pre-train SMAUG with one recipe: ``python -m train.pretrain --recipe smaug [key=value ...]``.

Reads ``params.yaml`` (``--params``), deep-merges ``pipeline/recipes/<recipe>.yaml`` and the
``key.path=value`` overrides, then trains for ``pretrain.steps`` optimiser steps on the shards
at ``pretrain.shards`` and writes:

* ``<pretrain.out_dir>/<recipe>/`` the checkpoint (model.safetensors, optim.pt, state.json),
  rewritten atomically every ``pretrain.ckpt_every`` steps; a rerun resumes from it
  (``--fresh`` starts over);
* ``<results_dir>/dvclive/pretrain-<recipe>/`` DVCLive metrics and loss curves
  (``dvc metrics show`` / ``dvc plots show``);
* ``<results_dir>/metrics/pretrain-<recipe>.json`` the cost accounting (:mod:`train.cost`) and
  the loader's skipped (corrupt) samples: ``skipped_samples`` and the first ``skipped_keys``.

``--run-name NAME`` puts all three under NAME instead of the recipe (several runs of one recipe).
``--equal-time JSON [JSON]`` trains for the wall time the candidate (smaug) needs for
``pretrain.steps``: steps scaled by the two recipes' clips/s, read from ``train.bench``'s JSON or
from the two finished runs' metrics files. The DVC stage ``pretrain-equal-time`` runs
``--recipe dense --run-name dense-equal-time`` with the metrics files, for the same-cost half of
the paper's claim (``results/tables/claim.md``).

Exit codes (:func:`main` returns them; SLURM / submitit wrappers read them):
0 finished; 75 (``EXIT_INTERRUPTED``) stopped by SIGTERM/SIGUSR1/SIGUSR2 (at any moment, loader
workers included: :mod:`train.signals`) after writing a checkpoint, or before the first step
with nothing to save, so requeue and rerun the same command to continue; 2 a checkpoint that
cannot be loaded (``error: <path>: why``); any other exception (a bad config value, a
non-finite loss naming its step and batch keys) propagates.

Data-parallel: run under ``torchrun`` or submitit (``TorchDistributedEnvironment().export()``);
each rank reads its own shard split and takes ``loader.batch_size`` clips per micro-batch, so the
global batch is ``batch_size * accum * WORLD_SIZE``.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line: own the stop signals before the slow imports
    from train.signals import STOP

    STOP.install()

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from pipeline.config import ConfigError, deep_merge, load_params, load_yaml, recipe_path, section, to_dict
from train import cost
from train.checkpoint import find_checkpoint, read_state, repair
from train.config import PretrainConfig
from train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from train.trainer import EXIT_INTERRUPTED, Trainer, TrainingInterrupted, default_loss

log = logging.getLogger("train.pretrain")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="smaug", help="pipeline/recipes/<name>.yaml (default smaug)")
    p.add_argument("--params", default=None, help="params file (default: the repository's params.yaml)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint, start over")
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
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    return p.parse_args(argv)


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
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected int, got {seed!r}")
    return {"params": params, "pretrain": pre, "model": model, "loader": loader,
            "seed": pre.seed if pre.seed is not None else seed, "recipe": recipe}


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


def preset_configs(run: dict[str, Any], params_path: str | None, overrides: list[str]):
    """This recipe's model and loader at paper scale (the ``cost.preset`` overlay on top)."""
    from train.data import LoaderConfig
    from train.model import ModelConfig

    pre: PretrainConfig = run["pretrain"]
    params = load_params(params_path, recipe=run["recipe"], overrides=overrides)
    overlay = load_yaml(recipe_path(pre.cost.preset))
    overlay.pop("description", None)
    params = deep_merge(params, overlay)
    return section(params, ModelConfig, "model"), section(params, LoaderConfig, "loader")


# --------------------------------------------------------------------------- data


SKIPPED_KEYS_KEPT = 50  # how many skipped samples the metrics file names


class BatchStream:
    """Endless training batches, epoch after epoch, that can start mid-epoch.

    The loader is deterministic given (seed, epoch), so the position ``(epoch, batch)`` is all
    a checkpoint needs to resume the same stream; the batches before it are skipped. The
    samples the loader skipped as corrupt are counted with the batches they came with, so a
    resumed run counts each once (``skipped``, and the first ``skipped_keys`` as [key, reason]).
    """

    def __init__(self, loader, *, epoch: int = 0, batch: int = 0, skipped: int = 0,
                 skipped_keys: list | None = None) -> None:
        self.loader = loader
        self.epoch, self.batch = epoch, batch
        self.skipped, self.skipped_keys = skipped, [list(k) for k in skipped_keys or []]

    def state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "skipped": self.skipped,
                "skipped_keys": [list(k) for k in self.skipped_keys]}

    def _count_skips(self, counted: int) -> int:
        """Add the loader's skips since ``counted`` (its per-epoch list); returns the new mark."""
        new = self.loader.stats["skipped_keys"][counted:]
        self.skipped += len(new)
        room = SKIPPED_KEYS_KEPT - len(self.skipped_keys)
        self.skipped_keys += [[str(k), str(r)] for k, r in new[:max(room, 0)]]
        return counted + len(new)

    def __iter__(self) -> Iterator[dict]:
        while True:
            self.loader.set_epoch(self.epoch)
            skip, seen, counted = self.batch, 0, 0
            for b in self.loader:
                seen += 1
                if seen <= skip:  # consumed before the resume: its skips were counted then
                    counted = len(self.loader.stats["skipped_keys"])
                    continue
                counted = self._count_skips(counted)
                self.batch += 1
                yield b
            self._count_skips(counted)
            if seen == 0:
                raise RuntimeError(f"epoch {self.epoch} of the training shards yielded no batch; "
                                   "are the shards empty or all samples broken?")
            self.epoch, self.batch = self.epoch + 1, 0


# --------------------------------------------------------------------------- main


def train(args: argparse.Namespace, dist: DistInfo) -> int:
    from train.data import build_loader
    from train.model import SMAUG

    t_main = time.perf_counter()
    run = load_run_config(args.params, args.recipe, args.overrides)
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
    recipe, seed = run["recipe"], run["seed"]
    name = args.run_name or recipe
    if pre.threads:
        torch.set_num_threads(pre.threads)
    run_dir = Path(pre.out_dir) / name
    results = Path(pre.results_dir)

    torch.manual_seed(seed)  # identical initial weights on every rank
    model = SMAUG(run["model"])
    ckpt_state = {"recipe": recipe, "run_name": name, "equal_time": equal_time, "params": run["params"],
                  "model_config": to_dict(run["model"]), "loader_config": to_dict(run["loader"])}

    live = None
    if dist.is_main:  # what an interrupted checkpoint write left: restored or removed
        for what in repair(run_dir):
            log.warning("%s", what)
    barrier(dist)
    resume_from = None if args.fresh else find_checkpoint(run_dir, repair_first=False)
    if dist.is_main:
        from dvclive import Live

        # dvcyaml=None: our dvc.yaml is written by hand (pipeline/dvc_fragments), not by DVCLive.
        live = Live(dir=str(results / "dvclive" / f"pretrain-{name}"), save_dvc_exp=False,
                    dvcyaml=None, resume=resume_from is not None)
        live.log_params({"recipe": recipe, "run_name": name, "steps": pre.steps, "lr": pre.lr,
                         "batch_size": run["loader"].batch_size, "accum": pre.accum,
                         "world_size": dist.world_size})

    trainer = Trainer(model, pre.trainer_config(), dist=dist, ckpt_dir=run_dir,
                      ckpt_state=ckpt_state, live=live, progress=not args.no_progress,
                      desc=f"pretrain {name}", seed=seed)
    position = {"epoch": 0, "batch": 0}
    if resume_from is not None:
        state = read_state(resume_from)
        if state.get("finished") and state.get("step", 0) >= pre.steps:
            log.info("%s already finished at step %s; nothing to do (--fresh to retrain)",
                     run_dir, state["step"])
            return 0
        trainer.resume(resume_from)
        position = dict(trainer.resumed_extra.get("data", position))
        log.info("resumed %s at step %d (data epoch %d, batch %d)", run_dir, trainer.step,
                 position["epoch"], position["batch"])

    loader = build_loader(run["loader"], pre.shards, train=True, seed=seed, rank=dist.rank,
                          world_size=dist.world_size)
    stream = BatchStream(loader, **position)
    trainer.extra_state = lambda: {"data": stream.state()}
    batches = iter(stream)

    # FLOPs of one real training step, counted on the first batch before training on it.
    first = next(batches)
    flops_first, out = cost.count_step_flops(trainer.model, _to(first, dist.device), default_loss,
                                             autocast_dtype=trainer.autocast_dtype)
    flops_per_clip = flops_first / first["video"].shape[0]

    def chained():
        yield first
        yield from batches

    try:
        result = trainer.fit(chained())
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        if live is not None:
            live.end()
        return EXIT_INTERRUPTED
    trainer.save(finished=True, metrics={"final_loss": result.final_loss})

    skipped = int(all_reduce_sum(torch.tensor([stream.skipped], dtype=torch.float64, device=dist.device),
                                 dist)[0])  # every rank's loader skips its own samples
    # Every rank counts (the model's VTC gathers across ranks, so all must run the step).
    paper_model, paper_loader = preset_configs(run, args.params, args.overrides)
    paper_flops = cost.preset_flops_per_clip(paper_model, paper_loader.frames_per_clip,
                                             paper_loader.image_size, paper_loader.max_len,
                                             device=dist.device)
    if dist.is_main:
        summary = cost_summary(run, result, flops_per_clip, paper_flops, dist, t_main)
        summary["run_name"] = name
        summary["skipped_samples"] = skipped
        summary["skipped_keys"] = stream.skipped_keys
        if equal_time is not None:
            summary["equal_time"] = equal_time
        cost.write_json(results / "metrics" / f"pretrain-{name}.json", summary)
        for key in ("clips_per_s", "data_wait_frac", "final_loss", "flops_per_clip",
                    "projected_gpu_hours", "skipped_samples"):
            live.summary[key] = summary[key]
        live.step = trainer.step  # next_step() has moved one past the last logged row
        live.make_summary()
        live.end()
        if args.plot:
            draw_sparsification(trainer.model, first, args.plot)
    return 0


def _to(batch: dict, device: torch.device) -> dict:
    from train.trainer import to_device

    return to_device(batch, device)


def steady_clips_per_s(history: list[dict[str, float]], clips_per_step: int) -> float:
    """Throughput without the first steps (allocation, first-call overheads)."""
    skip = min(len(history) // 10, 5)
    rows = history[skip:] or history
    total = sum(r["step_s"] for r in rows)
    return clips_per_step * len(rows) / total if total > 0 else 0.0


def cost_summary(run, result, flops_per_clip, paper_flops, dist, t_main) -> dict[str, Any]:
    pre: PretrainConfig = run["pretrain"]
    batch = run["loader"].batch_size
    clips_per_step = batch * pre.accum * dist.world_size
    projection = cost.project_gpu_hours(paper_flops, pre.cost)
    return {
        "recipe": run["recipe"],
        "steps": result.steps,
        "clips_per_step": clips_per_step,
        "world_size": dist.world_size,
        "device": str(dist.device),
        "threads": torch.get_num_threads(),
        "flops_per_clip": flops_per_clip,
        "flops_per_step": flops_per_clip * clips_per_step,
        "clips_per_s": steady_clips_per_s(result.history, clips_per_step),
        "clips_per_s_all_steps": result.clips_per_s,
        "train_wall_s": result.wall_s,
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
        "projected_gpu_hours": projection["gpu_hours"],
        "projection": projection,
    }


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
        raise SystemExit("--plot-only needs --plot PATH")
    run = load_run_config(args.params, args.recipe, args.overrides)
    model, _ = load_model(Path(run["pretrain"].out_dir) / (args.run_name or args.recipe))
    loader = build_loader(run["loader"], run["pretrain"].shards, train=False, seed=run["seed"])
    draw_sparsification(model, next(iter(loader)), args.plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for the command line and for submitit jobs (``main(argv)``): see module doc."""
    from train.checkpoint import CheckpointError
    from train.signals import STOP

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.plot_only:
            return plot_only(args)
        with STOP:  # before any loader worker exists: see train.signals
            dist = init_distributed(args.device)
            try:
                return train(args, dist)
            finally:
                shutdown(dist)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
