"""Extra pre-training clips for the built-in benchmark: ``python -m studies.more_data.generate``.

    python -m studies.more_data.generate --seed 1 --num-clips 1650 --out data/studies/more_data/raw

The default benchmark pre-trains on 350 clips; 400 steps x 16 clips read each about 18 times.
This writes more clips of the same distribution (same generator, same params, another seed) so
a run can read more distinct clips in the same steps, with the benchmark's test split as it is.

What keeps the comparison fair: the new clips never show a colour+shape combination the
benchmark holds out for its test split. The generator picks those combinations from its seed,
so here they come from the benchmark's seed (``--benchmark-seed``), not from ``--seed``; and
only the new set's train split is meant to be read (its own small test split exists because
the generator requires one). ``check_extra`` verifies both and counts how many benchmark test
captions the new train captions repeat word for word, beside the benchmark's own train split.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from pipeline.synthetic import plan
from pipeline.synthetic.config import load_config
from pipeline.synthetic.generate import generate


def generate_extra(seed: int, num_clips: int, out: Path, benchmark_seed: int, params: str | None = None,
                   overrides: list[str] = (), progress: bool = True) -> dict:
    """Write ``num_clips`` clips (90% train) of seed ``seed`` to ``out``, holding out the
    combinations of the benchmark made with ``benchmark_seed``; every other setting is the
    params file's ``synthetic`` section (plus ``overrides``)."""
    if seed == benchmark_seed:
        raise ValueError(f"--seed {seed} is the benchmark's own seed: its clips would repeat the benchmark's")
    # "pretrain_clips=0" first: the extra set is made here, not by params.yaml's own extra clips
    cfg = load_config(params, ["synthetic.pretrain_clips=0", *overrides, f"synthetic.seed={seed}", f"synthetic.num_clips={num_clips}",
                               "synthetic.train_fraction=0.9", "synthetic.val_fraction=0.0",
                               "synthetic.test_fraction=0.1"])
    chosen = plan.held_out_combinations
    plan.held_out_combinations = lambda _seed, fraction: chosen(benchmark_seed, fraction)
    try:
        return generate(cfg, out, progress=progress)
    finally:
        plan.held_out_combinations = chosen


def _train_captions(root: Path) -> list[str]:
    with open(root / "annotations" / "webvid_train.csv", newline="") as f:
        return [row["name"] for row in csv.DictReader(f)]


def check_extra(extra: Path, benchmark: Path, held_out_fraction: float, benchmark_seed: int) -> dict:
    """Refuse an extra set whose train clips show a held-out combination; count exact caption
    repeats of the benchmark's test captions (new train set against the benchmark's own)."""
    held = {tuple(c) for c in plan.held_out_combinations(benchmark_seed, held_out_fraction)}
    meta = json.loads((extra / "meta.json").read_text())
    ours = json.loads((benchmark / "meta.json").read_text())["held_out_combinations"]
    if meta["held_out_combinations"] != ours:
        raise ValueError(f"the extra set holds out {meta['held_out_combinations']}, the benchmark {ours}")
    clips = meta["clips"]
    leaks = [c["stem"] for c in clips if c.get("split") == "train" and c.get("held_out")]
    if leaks:
        raise ValueError(f"{len(leaks)} extra train clips show a held-out combination, e.g. {leaks[0]}")
    test = json.loads((benchmark / "annotations" / "msrvtt" / "msrvtt_ret_test.json").read_text())
    test_captions = {a["caption"] for a in test["annotations"]}
    new, own = set(_train_captions(extra)), set(_train_captions(benchmark))
    return {"extra_train_captions": len(new), "held_out_combinations": sorted(map(list, held)),
            "test_captions": len(test_captions),
            "test_captions_in_extra_train": len(test_captions & new),
            "test_captions_in_benchmark_train": len(test_captions & own)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="studies.more_data.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, required=True, help="the new clips' seed (not the benchmark's)")
    p.add_argument("--num-clips", type=int, required=True, help="clips to write (90%% of them train)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--benchmark", type=Path, default=Path("data/raw/synthetic"), help="the benchmark's folder")
    p.add_argument("--benchmark-seed", type=int, default=None, help="default: params.yaml's synthetic.seed")
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(argv)
    cfg = load_config(args.params)
    bseed = cfg.seed if args.benchmark_seed is None else args.benchmark_seed
    summary = generate_extra(args.seed, args.num_clips, args.out, bseed, args.params)
    summary["check"] = check_extra(args.out, args.benchmark, cfg.held_out_fraction, bseed)
    (args.out / "extra.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
