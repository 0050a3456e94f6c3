"""Zero-shot R@1 of the default recipe against its pre-training steps, a dot per seed.

    python -m studies.steps_plot --point 400=results/eval/smaug.json,results/ablation/eval/smaug-seed1.json \
        --point 800=results/studies/order/steps800/eval/smaug.json,... [--reference "dense, 400 steps=FILE,..."] \
        [--target 20] [--out results/studies/levers/steps.png]

Each ``--point STEPS=FILE,...`` is one step count and the zero-shot evaluations of its seeds
(``eval.evaluate``'s ``<run>.json``); the mean is drawn as a line through the points, each seed
as a dot. ``--reference LABEL=FILE,...`` draws another recipe's mean as a horizontal line, and
``--target`` a dashed one. The figures are printed as well.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def r1_of(files: list[str]) -> list[float]:
    out = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"{f} not found (evaluate the run first)")
        out.append(float(json.loads(path.read_text())["zero_shot"]["retrieval"]["normal"]["vtc"]["t2v"]["R@1"]))
    return out


def parse(spec: str, what: str) -> tuple[str, list[str]]:
    key, _, files = spec.partition("=")
    if not key or not files:
        raise SystemExit(f"{what} {spec!r}: expected KEY=FILE[,FILE...]")
    return key, files.split(",")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="studies.steps_plot", description=__doc__.split("\n\n")[0])
    p.add_argument("--point", action="append", required=True, metavar="STEPS=FILE,...")
    p.add_argument("--reference", action="append", default=[], metavar="LABEL=FILE,...")
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--out", default="results/studies/levers/steps.png")
    args = p.parse_args(argv)
    points = []
    for spec in args.point:
        steps, files = parse(spec, "--point")
        if not steps.isdigit():
            p.error(f"--point {spec!r}: STEPS must be a whole number")
        points.append((int(steps), r1_of(files)))
    points.sort()
    refs = [(label, r1_of(files)) for label, files in (parse(s, "--reference") for s in args.reference)]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    means = [sum(r) / len(r) for _, r in points]
    ax.plot([s for s, _ in points], means, "-o", color="tab:blue", label="smaug, mean over seeds")
    for steps, r1s in points:
        ax.scatter([steps] * len(r1s), r1s, color="tab:blue", alpha=0.4, s=18)
        print(f"{steps} steps: R@1 {sum(r1s) / len(r1s):.1f} ({', '.join(f'{r:.1f}' for r in r1s)})")
    for i, (label, r1s) in enumerate(refs):
        mean = sum(r1s) / len(r1s)
        ax.axhline(mean, color=f"C{i + 2}", lw=1, label=f"{label}: {mean:.1f} ({len(r1s)} seeds)")
        print(f"{label}: R@1 {mean:.1f} ({', '.join(f'{r:.1f}' for r in r1s)})")
    if args.target is not None:
        ax.axhline(args.target, color="gray", ls="--", lw=1, label=f"target {args.target:g}")
    ax.set_xlabel("pre-training steps (x 16 clips)")
    ax.set_ylabel("zero-shot t2v R@1 (VTC), ret_test")
    ax.set_title("What more steps buy the default recipe")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
