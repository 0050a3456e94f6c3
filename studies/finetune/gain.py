"""What fine-tuning adds to zero-shot retrieval over several pre-training seeds, paired.

    python -m studies.finetune.gain --out results/studies/finetune/gain.json \
        --arm "ft128=results/studies/finetune/ft128/eval/smaug.json,results/studies/finetune/seed1-ft128/eval/smaug.json"

Each file is one ``eval.evaluate`` result holding zero-shot and fine-tuned retrieval of one
pre-trained checkpoint on the same test set. The gain of a seed is fine-tuned minus zero-shot
t2v R@1 (VTC ranking). Its 95% interval follows :mod:`eval.claim`'s rule on the paired gains:
each resample draws the test videos once for both settings (they are the same videos) and takes
the mean gain over the seeds on that draw (a seed's fine-tuning starts from that seed's
checkpoint: the two are paired); the seeds' spread of the gain is added as Student's t with
n - 1 degrees of freedom. (Until 2026-12-04 the seeds were resampled with replacement, which
never leaves the range of 3 seeds' gains.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval.claim import RunScores, interval, verdict, video_weights


def scores_of(files: list[str]) -> tuple[RunScores, RunScores]:
    """The zero-shot and fine-tuned VTC ranks of each file, as two runs of seeds."""
    zero, tuned, videos = [], [], None
    for f in files:
        data = json.loads(Path(f).read_text())
        pair = [data.get(s, {}).get("retrieval") for s in ("zero_shot", "finetuned")]
        if not all(pair):
            raise ValueError(f"{f}: needs both zero-shot and fine-tuned retrieval")
        queries = [m["normal"].get("per_query") for m in pair]
        if not all(q and "vtc" in q for q in queries):
            raise ValueError(f"{f}: no per-query VTC ranks (evaluate with the current eval.evaluate)")
        if videos is None:
            videos = queries[0]["video"]
        if any(q["video"] != videos for q in queries):
            raise ValueError(f"{f}: ranked on another test set than {files[0]}")
        zero.append(queries[0]["vtc"])
        tuned.append(queries[1]["vtc"])
    return (RunScores("zero-shot", list(files), videos, zero), RunScores("fine-tuned", list(files), videos, tuned))


def paired_gain(files: list[str], resamples: int = 20000, seed: int = 0) -> dict:
    zero, tuned = scores_of(files)
    rng = np.random.default_rng(seed)
    weights = video_weights(zero.num_videos, resamples, rng)
    per_seed = [100.0 * (weights @ s.hits.T) / (weights @ s.per_video)[:, None] for s in (zero, tuned)]  # [B, S]
    diff = (per_seed[1] - per_seed[0]).mean(axis=1)
    gains = [t - z for z, t in zip(zero.r1, tuned.r1)]
    if len(files) > 1:
        diff = diff + np.std(gains, ddof=1) / np.sqrt(len(files)) * rng.standard_t(len(files) - 1, size=len(diff))
    low, high = interval(diff)
    return {"files": list(files), "zero_shot_r1": zero.r1, "finetuned_r1": tuned.r1, "gain_per_seed": gains,
            "gain_mean": float(np.mean(gains)), "gain_ci95": [low, high], "resamples": resamples,
            "verdict": {"holds": "fine-tuning raises R@1", "does not hold": "fine-tuning lowers R@1",
                        "cannot tell": "cannot tell"}[verdict(low, high, 0.0)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", action="append", required=True, help="name=eval json[,eval json ...] (one per seed)")
    ap.add_argument("--out", help="write the summary here as JSON")
    ap.add_argument("--resamples", type=int, default=20000)
    args = ap.parse_args(argv)
    out = {}
    for arm in args.arm:
        name, sep, files = arm.partition("=")
        if not sep or not files:
            ap.error(f"--arm {arm!r}: expected name=file[,file ...]")
        out[name] = paired_gain(files.split(","), args.resamples)
        g = out[name]
        print(f"{name}: {len(g['files'])} seed(s), zero-shot {g['zero_shot_r1']} -> fine-tuned {g['finetuned_r1']}: "
              f"{g['gain_mean']:+.1f} [{g['gain_ci95'][0]:+.1f}, {g['gain_ci95'][1]:+.1f}], {g['verdict']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
