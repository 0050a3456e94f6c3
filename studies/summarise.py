"""A study's arms against the committed smaug seeds: ``python -m studies.summarise``.

    python -m studies.summarise --dir results/studies/caption_bank --arm bank=bank,bank-seed1
        [--arm NAME=RUN,RUN ...] [--baseline results/eval/smaug.json,results/ablation/eval/smaug-seed1.json,...]
        [--out <dir>/summary.json]

An arm is a name and its runs, each ``<dir>/<run>/eval/smaug.json`` (the zero-shot evaluation of
that run's checkpoint). The baseline is the default recipe's committed
seeds. Per arm: R@1 per seed (VTC ranking), mean, R@10 mean, order-pair accuracy and pair text
score per seed, and the difference in mean R@1 against the baseline with the 95% interval of
eval/claim.py's rule (the test videos resampled, the seeds' spread added as Student's t), with its
verdict against 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval.claim import RunScores, compare, recipe_interval

BASELINE = ("results/eval/smaug.json", "results/ablation/eval/smaug-seed1.json",
            "results/ablation/eval/smaug-seed2.json")


def load_runs(label: str, files: list[Path]) -> tuple[RunScores, list[dict]]:
    """RunScores of the files' zero-shot retrieval (VTC ranks), and each file's headline."""
    normal, rows = [], []
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{label}: {f} not found (evaluate the run first)")
        n = json.loads(f.read_text())["zero_shot"]["retrieval"]["normal"]
        normal.append(n)
        pairs, t2v = n.get("order_pairs") or {}, n["vtc"]["t2v"]
        rows.append({"file": str(f), "r1": t2v["R@1"], "r10": t2v["R@10"],
                     "order_pair_acc": pairs.get("vtc"), "order_pair_text": (pairs.get("pairs") or {}).get("text"),
                     "order_pair_group": (pairs.get("pairs") or {}).get("group")})
    scores = RunScores(label, [r["file"] for r in rows], normal[0]["per_query"]["video"],
                       [n["per_query"]["vtc"] for n in normal])
    return scores, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="studies.summarise", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="the study's results folder (results/studies/<study>)")
    p.add_argument("--arm", action="append", required=True, metavar="NAME=RUN,RUN")
    p.add_argument("--baseline", default=",".join(BASELINE))
    p.add_argument("--resamples", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default: <dir>/summary.json")
    args = p.parse_args(argv)
    base, base_rows = load_runs("baseline", [Path(f) for f in args.baseline.split(",")])
    out = {"baseline": {"runs": base_rows, "r1_mean": float(np.mean(base.r1)),
                        "r1_ci95": recipe_interval(base, args.resamples, args.seed)}, "arms": {}}
    for spec in args.arm:
        name, _, runs = spec.partition("=")
        if not runs:
            p.error(f"--arm {spec!r}: expected NAME=RUN[,RUN...]")
        files = [Path(args.dir) / run / "eval" / "smaug.json" for run in runs.split(",")]
        scores, rows = load_runs(name, files)
        out["arms"][name] = {
            "runs": rows, "r1_mean": float(np.mean(scores.r1)),
            "r10_mean": float(np.mean([r["r10"] for r in rows])),
            "r1_ci95": recipe_interval(scores, args.resamples, args.seed),
            "vs_baseline": compare(scores, base, 0.0, args.resamples, args.seed),
        }
    target = Path(args.out) if args.out else Path(args.dir) / "summary.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"baseline R@1 {out['baseline']['r1_mean']:.1f} over {len(base_rows)} seeds")
    for name, arm in out["arms"].items():
        d = arm["vs_baseline"]
        per_seed = ", ".join(f"{r['r1']:.1f}" for r in arm["runs"])
        print(f"{name}: R@1 {arm['r1_mean']:.1f} ({per_seed}), "
              f"difference {d['difference']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] {d['verdict']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
