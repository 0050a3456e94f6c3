"""The same checkpoints scored on two test views: ``python -m studies.view.compare``.

    python -m studies.view.compare --pair smaug=results/eval/smaug.json,results/studies/view/whole-eval-smaug/eval/smaug.json \
        [--pair NAME=CENTRE.json,WHOLE.json ...] [--out results/studies/view/compare.json]

Each pair is one checkpoint's zero-shot retrieval evaluated twice (``eval.evaluate``'s details
files), so the difference is paired: the same model, the same test videos, only the view
differs. Per checkpoint: R@1 (VTC ranking) of each view and the gain with its 95% interval over
test videos (a video keeps all its captions). Per recipe (pairs named ``recipe`` and
``recipe-seedN``): the mean gain over its seeds, whose interval resamples the test videos (the same
draw for every seed) and adds the seeds' spread of the gain as Student's t, as eval/claim.py does
for R@1 itself.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from eval.claim import interval, video_weights


def _ranks(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(video of each query, VTC rank of each query, the headline) of a details file."""
    normal = json.loads(path.read_text())["zero_shot"]["retrieval"]["normal"]
    t2v = normal["vtc"]["t2v"]
    head = {"r1": t2v["R@1"], "r5": t2v["R@5"], "r10": t2v["R@10"], "mdr": t2v.get("MdR"),
            "order_pair_acc": (normal.get("order_pairs") or {}).get("vtc")}
    return np.asarray(normal["per_query"]["video"]), np.asarray(normal["per_query"]["vtc"]), head


def _hits(videos: np.ndarray, ranks: np.ndarray, num_videos: int) -> np.ndarray:
    return np.bincount(videos, weights=(ranks <= 1).astype(float), minlength=num_videos)


def paired_gains(pairs: dict[str, tuple[Path, Path]], resamples: int = 20000, seed: int = 0) -> dict:
    """Per checkpoint and per recipe: R@1 of both views and the gain's 95% interval."""
    loaded, videos = {}, None
    for name, (centre, whole) in pairs.items():
        vc, rc, hc = _ranks(centre)
        vw, rw, hw = _ranks(whole)
        if not np.array_equal(vc, vw) or (videos is not None and not np.array_equal(videos, vc)):
            raise ValueError(f"{name}: the two evaluations were not made on one test set")
        videos = vc
        loaded[name] = (rc, rw, hc, hw)
    num_videos = int(videos.max()) + 1
    per_video = np.bincount(videos, minlength=num_videos).astype(float)
    rng = np.random.default_rng(seed)
    weights = video_weights(num_videos, resamples, rng)
    denom = weights @ per_video
    runs, gains_drawn, by_recipe = {}, {}, defaultdict(list)
    for name, (rc, rw, hc, hw) in loaded.items():
        diff = _hits(videos, rw, num_videos) - _hits(videos, rc, num_videos)
        drawn = 100.0 * (weights @ diff) / denom
        gain = float(100.0 * diff.sum() / per_video.sum())
        runs[name] = {"centre": hc, "whole": hw, "gain_r1": round(gain, 2),
                      "gain_r1_ci95": [round(x, 2) for x in interval(drawn)]}
        gains_drawn[name] = drawn
        by_recipe[re.sub(r"-seed\d+$", "", name)].append(name)
    recipes = {}
    for recipe, names in by_recipe.items():
        gains = np.array([runs[n]["gain_r1"] for n in names])
        mean = np.mean([gains_drawn[n] for n in names], axis=0)
        if len(names) > 1:
            mean = mean + np.std(gains, ddof=1) / np.sqrt(len(names)) * rng.standard_t(len(names) - 1, size=len(mean))
        recipes[recipe] = {"runs": names, "r1_centre": [runs[n]["centre"]["r1"] for n in names],
                           "r1_whole": [runs[n]["whole"]["r1"] for n in names],
                           "mean_gain_r1": round(float(gains.mean()), 2),
                           "mean_gain_r1_ci95": [round(x, 2) for x in interval(mean)]}
    return {"resamples": resamples, "seed": seed, "num_videos": num_videos, "runs": runs, "recipes": recipes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="studies.view.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", action="append", required=True, metavar="NAME=CENTRE.json,WHOLE.json")
    p.add_argument("--resamples", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/studies/view/compare.json")
    args = p.parse_args(argv)
    pairs = {}
    for spec in args.pair:
        name, sep, files = spec.partition("=")
        parts = files.split(",")
        if not sep or len(parts) != 2:
            p.error(f"--pair {spec!r}: expected NAME=CENTRE.json,WHOLE.json")
        for f in parts:
            if not Path(f).is_file():
                p.error(f"--pair {name}: {f} not found")
        pairs[name] = (Path(parts[0]), Path(parts[1]))
    result = paired_gains(pairs, args.resamples, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for recipe, r in result["recipes"].items():
        lo, hi = r["mean_gain_r1_ci95"]
        print(f"{recipe}: R@1 centre {r['r1_centre']} -> whole {r['r1_whole']}: "
              f"mean gain {r['mean_gain_r1']:+.1f} [{lo:+.1f}, {hi:+.1f}]")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
