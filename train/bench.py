"""Pre-training speed of SMAUG against the dense baseline, measured in one run.

``python -m train.bench [--params params.yaml] [--steps 4] [--warmup 1] [--threads N] [key=value ...]``
writes ``results/bench/pretrain.json``:

* ``speedup``: SMAUG clips/s over dense clips/s (training steps, same machine, same batches);
* ``flops_ratio``: dense FLOPs per clip over SMAUG's (one forward+backward, FlopCounterMode
  with attention counted: ``attention_counted``);
* each recipe's clips/s, seconds per step and FLOPs per clip;
* ``grid``: the same comparison at several frames x image sizes (tokens per clip), FLOPs
  counted at every point and clips/s timed up to ``--grid-timed-max-tokens`` (train/speedup_grid.py),
  drawn in ``--plot`` (``results/plots/speedup_vs_tokens.png``);
* ``projection``: each recipe's GPU-hours at paper scale, from the FLOPs per clip of the
  ``cost.preset`` model (``paper``: ViT-B/16 at 224 px + BERT-base as 6 trainable text and 6
  fusion layers) and the ``cost:`` assumptions of params.yaml. It is computed
  here, not in the training runs, so changing an assumption retrains nothing.

Both recipes build the same architecture from the same seed and train on the same real
batches, read once from the pre-training shards before timing (so decoding is not measured).
After ``--warmup`` untimed steps each, the timed steps alternate between the recipes and swap
the order every round (A B, B A, ...), so slow drift of the machine (other processes, thermal)
falls on both alike. ``key=value`` overrides apply to both recipes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pipeline import cli
from pipeline.config import ConfigError, deep_merge, load_params, load_recipe, section
from pipeline.provenance import BENCH_KEYS, FIELD, stamp
from train import cost
from train.config import CostConfig
from train.pretrain import load_run_config
from train.speedup_grid import GridPoint, measure_grid, plot_speedup
from train.trainer import Trainer, default_loss

log = logging.getLogger("train.bench")
BASELINE, CANDIDATE = "dense", "smaug"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4, help="timed steps per recipe")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per recipe first")
    p.add_argument("--out", default="results/bench/pretrain.json")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads while timing (default: pretrain.threads, so the ratio is the one "
                        "the pre-training runs get; 0 = torch's default; 1 steadies it on a machine "
                        "shared with other work)")
    p.add_argument("--candidate", default=CANDIDATE)
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument("--no-projection", action="store_true", help="skip the paper-scale projection")
    p.add_argument("--grid", default="4x96,8x96,16x160,8x224",
                   help="FRAMESxSIZE points of the speed-up grid (comma-separated; empty: no grid). "
                        "8x224 is the paper's token count (1568 tokens at patch 16)")
    p.add_argument("--grid-batch", type=int, default=2, help="clips per step at each grid point")
    p.add_argument("--grid-steps", type=int, default=1, help="timed steps per recipe at each timed grid point")
    p.add_argument("--grid-timed-max-tokens", type=int, default=300,
                   help="time grid points up to this many tokens per clip; larger ones get counted FLOPs only")
    p.add_argument("--plot", default="results/plots/speedup_vs_tokens.png", help="the grid's plot")
    cli.add_config_arguments(p)
    args = cli.parse(p, argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.grid_batch < 2 or args.grid_steps < 1:
        p.error("--grid-batch must be >= 2 (in-batch objectives) and --grid-steps >= 1")
    try:
        args.grid_points = [GridPoint.parse(t) for t in args.grid.split(",") if t.strip()]
    except ValueError as err:
        p.error(str(err))
    return args


def read_batches(run: dict, count: int) -> list[dict]:
    """``count`` real training batches from the pre-training shards (cycled if fewer); with
    ``pretrain.sources``, the first source's (the model step's cost does not depend on which)."""
    from train.data import build_loader

    shards = run["pretrain"].source_list()[0].shards
    loader = build_loader(run["loader"], shards, train=True, seed=run["seed"])
    batches: list[dict] = []
    it = iter(loader)
    for b in it:
        batches.append(b)
        if len(batches) >= count:
            break
    # Stop the loader's worker processes now: left alive they keep decoding ahead and take
    # CPU from the steps being timed.
    it.close()
    del it, loader
    gc.collect()
    if not batches:
        raise RuntimeError(f"{shards}: no training batch could be read")
    return batches


def timed_step(trainer: Trainer, batch: dict) -> tuple[float, float]:
    """One training step: (wall seconds, this process's CPU seconds), the device synchronised."""
    trainer.schedule.apply(trainer.schedule_step)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train_step([batch])
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    trainer.step += 1
    return dt, dc


def run_bench(args) -> dict:
    from train.model import SMAUG

    names = [args.candidate, args.baseline]
    runs = {name: load_run_config(args.params, name, args.overrides) for name in names}
    if runs[names[0]]["loader"] != runs[names[1]]["loader"]:
        raise RuntimeError("the two recipes must share the loader settings to share batches")
    threads = runs[names[0]]["pretrain"].threads if args.threads is None else args.threads
    if threads:
        torch.set_num_threads(threads)
    seed = runs[names[0]]["seed"]
    total = args.warmup + args.steps
    batches = read_batches(runs[names[0]], total)
    batch_size = batches[0]["video"].shape[0]

    trainers, flops = {}, {}
    for name in names:
        torch.manual_seed(seed)
        model = SMAUG(runs[name]["model"])
        cfg = runs[name]["pretrain"]
        trainers[name] = Trainer(model, cfg, progress=False, seed=seed)
        f, _ = cost.count_step_flops(trainers[name].model, batches[0], default_loss,
                                     autocast_dtype=trainers[name].autocast_dtype)
        flops[name] = f / batch_size

    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    load_before = os.getloadavg()[0]
    from tqdm import tqdm

    with tqdm(total=total * len(names), desc="bench smaug vs dense", unit="step") as bar:
        for i in range(total):
            order = names if i % 2 == 0 else names[::-1]
            batch = batches[i % len(batches)]
            for name in order:
                dt, dc = timed_step(trainers[name], batch)
                if i >= args.warmup:
                    times[name].append(dt)
                    cpu[name].append(dc)
                bar.update(1)

    result = {}
    for name in names:
        t = times[name]
        result[name] = {
            "clips_per_s": batch_size * len(t) / sum(t),
            "step_s_median": statistics.median(t),
            "step_s": t,
            "cpu_s_per_step": sum(cpu[name]) / len(cpu[name]),
            "flops_per_clip": flops[name],
        }
    cand, base = result[args.candidate], result[args.baseline]
    return {
        "speedup": cand["clips_per_s"] / base["clips_per_s"],
        "flops_ratio": base["flops_per_clip"] / cand["flops_per_clip"],
        # FLOPs include attention maps (train/cost.py); checked on a probe on this device.
        "attention_counted": cost.attention_counted(trainers[names[0]].device),
        # Robust companions to `speedup` on a shared machine: the ratio of median step times,
        # and of this process's CPU seconds per step (what other processes' load cannot steal).
        "speedup_median_step": base["step_s_median"] / cand["step_s_median"],
        "speedup_cpu_time": base["cpu_s_per_step"] / cand["cpu_s_per_step"],
        "speedup_best_step": min(base["step_s"]) / min(cand["step_s"]),
        "load_average": {"before": load_before, "after": os.getloadavg()[0],
                         "cpus": os.cpu_count()},
        "candidate": args.candidate,
        "baseline": args.baseline,
        args.candidate: cand,
        args.baseline: base,
        "batch_size": batch_size,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "schedule": "interleaved, order swapped every step, same batches for both",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(),
                    "device": str(trainers[names[0]].device),
                    "torch": torch.__version__},
    }


def paper_scale_projection(args) -> dict:
    """GPU-hours of each recipe at paper scale (``cost:`` in params.yaml), FLOPs counted on the
    ``cost.preset`` model built with random weights (the count does not depend on them)."""
    from train.data import LoaderConfig
    from train.model import ModelConfig

    params = load_params(args.params, overrides=args.overrides)
    assumptions = section(params, CostConfig, "cost")
    out: dict = {}
    for name in (args.candidate, args.baseline):
        recipe = deep_merge(load_params(args.params, recipe=name, overrides=args.overrides),
                            load_recipe(assumptions.preset))
        model, loader = section(recipe, ModelConfig, "model"), section(recipe, LoaderConfig, "loader")
        flops = cost.preset_flops_per_clip(model, loader.frames_per_clip, loader.image_size, loader.max_len)
        out[name] = cost.project_gpu_hours(flops, assumptions)
    out["gpu_hours_ratio"] = out[args.baseline]["gpu_hours"] / out[args.candidate]["gpu_hours"]
    out["flops_ratio"] = out[args.baseline]["flops_per_clip"] / out[args.candidate]["flops_per_clip"]
    out["preset"] = assumptions.preset
    out["attention_counted"] = cost.attention_counted("cpu")
    return out


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # every setting the run reads, before the timed benchmark (minutes at the stage's size)
    for recipe in (args.candidate, args.baseline):
        load_run_config(args.params, recipe, args.overrides)
    preset = section(load_params(args.params, overrides=args.overrides), CostConfig, "cost").preset
    try:
        load_recipe(preset)
    except ConfigError as err:
        raise ConfigError(f"cost.preset: {err}") from None
    if args.print_config:
        return cli.print_config(load_params(args.params, overrides=args.overrides))
    out = run_bench(args)
    if not args.no_projection:
        out["projection"] = paper_scale_projection(args)
    if args.grid_points:
        rows = measure_grid(args, args.grid_points, [args.candidate, args.baseline], batch_size=args.grid_batch,
                            steps=args.grid_steps, timed_max_tokens=args.grid_timed_max_tokens,
                            load_run_config=load_run_config)
        out["grid"] = {"points": rows, "timed_max_tokens": args.grid_timed_max_tokens,
                       "note": "points with timed=false carry counted FLOPs only (too big to time on this CPU)"}
        plot_speedup(rows, args.plot, args.candidate, args.baseline)
    out[FIELD] = stamp(load_params(args.params, overrides=args.overrides), BENCH_KEYS, overrides=args.overrides)
    cost.write_json(Path(args.out), out)
    log.info("speedup %.2fx (clips/s %s %.2f vs %s %.2f), flops_ratio %.2f -> %s",
             out["speedup"], args.candidate, out[args.candidate]["clips_per_s"], args.baseline,
             out[args.baseline]["clips_per_s"], out["flops_ratio"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
