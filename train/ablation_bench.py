"""Training speed of every ablation recipe, measured in one run: ``results/bench/ablation_speed.json``.

``python -m train.ablation_bench [--params params.yaml] [--recipes dense,smaug,...] [--steps 6]
[--warmup 1] [--threads N] [key=value ...]``

The ablation table's clips/s and wall-time columns come from the training runs themselves, and
those run on different days: this machine ran 1.3x faster on one night than on another, so a
column that mixes days compares days as much as recipes. This benchmark gives the table a
column whose ratios compare recipes only:

* every recipe is built from the same seed and trained on real batches read once from the
  pre-training shards before timing (decoding is not measured; a recipe with its own loader
  settings, e.g. singularity's single frame, gets batches of its own);
* after ``--warmup`` untimed steps, each round times one step of every recipe, the order
  rotated by one place and reversed every other round, so each recipe runs early and late in a
  round alike and slow drift of the machine falls on all of them;
* per recipe: clips/s, median and every step time, CPU seconds per step, FLOPs per clip
  (attention counted, train/cost.py) and ``clips_per_s_vs_baseline`` (its clips/s over the
  baseline's, dense by default).

It is a separate program from ``train.bench`` (SMAUG against dense with the paper-scale
projection and the tokens grid) so each stage reruns only when its own code changes.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

from pipeline import cli
from pipeline.config import load_params
from pipeline.provenance import FIELD, PRETRAIN_KEYS, stamp
from train import cost
from train.bench import read_batches, timed_step
from train.pretrain import load_run_config
from train.trainer import Trainer, default_loss

log = logging.getLogger("train.ablation_bench")
RECIPES = ("dense", "mask-only", "mask-no-mvm", "sparsify-only", "smaug", "simvtp", "mac", "singularity")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m train.ablation_bench", description=__doc__.split("\n")[0])
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes to time")
    p.add_argument("--baseline", default="dense", help="the recipe the ratios are taken against")
    p.add_argument("--steps", type=int, default=6, help="timed steps per recipe")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per recipe first")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads while timing (default: pretrain.threads, as the training runs have)")
    p.add_argument("--out", default="results/bench/ablation_speed.json")
    cli.add_config_arguments(p)
    args = cli.parse(p, argv)
    args.recipe_list = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if not args.recipe_list:
        p.error("--recipes: name at least one recipe")
    dup = next((r for r in args.recipe_list if args.recipe_list.count(r) > 1), None)
    if dup:
        p.error(f"--recipes: {dup!r} is named twice")
    if args.baseline not in args.recipe_list:
        p.error(f"--baseline {args.baseline!r} must be one of --recipes ({args.recipes})")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def round_order(names: list[str], i: int) -> list[str]:
    """Round ``i``'s order: rotated by ``i`` places, reversed on odd rounds."""
    k = i % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if i % 2 else order


def measure(runs: dict[str, dict], warmup: int, steps: int) -> dict[str, dict]:
    from tqdm import tqdm

    from train.model import SMAUG

    names = list(runs)
    total = warmup + steps
    batches_by_loader: dict[str, list[dict]] = {}
    trainers, flops, batches = {}, {}, {}
    for name in names:
        key = repr(runs[name]["loader"])  # recipes with the same loader settings share batches
        if key not in batches_by_loader:
            batches_by_loader[key] = read_batches(runs[name], total)
        batches[name] = batches_by_loader[key]
        seed = runs[name]["seed"]
        torch.manual_seed(seed)
        trainers[name] = Trainer(SMAUG(runs[name]["model"]), runs[name]["pretrain"], progress=False, seed=seed)
        size = batches[name][0]["video"].shape[0]
        f, _ = cost.count_step_flops(trainers[name].model, batches[name][0], default_loss,
                                     autocast_dtype=trainers[name].autocast_dtype)
        flops[name] = f / size

    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    with tqdm(total=total * len(names), desc="ablation recipes' speed", unit="step") as bar:
        for i in range(total):
            for name in round_order(names, i):
                dt, dc = timed_step(trainers[name], batches[name][i % len(batches[name])])
                if i >= warmup:
                    times[name].append(dt)
                    cpu[name].append(dc)
                bar.update(1)
    out = {}
    for name in names:
        size = batches[name][0]["video"].shape[0]
        out[name] = {"clips_per_s": size * len(times[name]) / sum(times[name]),
                     "step_s_median": statistics.median(times[name]), "step_s": times[name],
                     "cpu_s_per_step": statistics.fmean(cpu[name]), "flops_per_clip": flops[name],
                     "batch_size": size, "device": str(trainers[name].device)}
    return out


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # every recipe's settings, checked before minutes of timing
    runs = {name: load_run_config(args.params, name, args.overrides) for name in args.recipe_list}
    if args.print_config:
        return cli.print_config(load_params(args.params, overrides=args.overrides))
    threads = runs[args.baseline]["pretrain"].threads if args.threads is None else args.threads
    if threads:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    recipes = measure(runs, args.warmup, args.steps)
    base = recipes[args.baseline]["clips_per_s"]
    for r in recipes.values():
        r["clips_per_s_vs_baseline"] = r["clips_per_s"] / base
    out = {
        "baseline": args.baseline,
        "recipes": recipes,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "schedule": "one step of every recipe per round, order rotated each round and reversed every other",
        "load_average": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        FIELD: stamp(load_params(args.params, overrides=args.overrides), PRETRAIN_KEYS, overrides=args.overrides),
    }
    cost.write_json(Path(args.out), out)
    log.info("clips/s vs %s: %s -> %s", args.baseline,
             ", ".join(f"{n} {r['clips_per_s_vs_baseline']:.2f}x" for n, r in recipes.items()), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
