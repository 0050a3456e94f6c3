"""Order-pair accuracy of the study's arms, split by how the pair's captions are built.

    python -m studies.order.analyse --arm NAME=CHECKPOINT ... [--pairs FILE] [--shards DIR]
        [--out results/studies/order/summary.json]

The benchmark's order pairs come in two forms: both events on one subject ("a square moves
left, then turns blue") and on two subjects ("a triangle moves down, then a circle
disappears"). The caption-order rule (caption_order.py) turns a two-subject training caption
into exactly the test's kind of swap, but a one-subject one into a differently worded negative
("... moves left after it turns blue"), so the one-subject pairs are the test of whether what
it teaches carries over beyond a wording. Per arm: accuracy on all pairs, on each form, with
95% bootstrap intervals over pairs (both clips of a pair are drawn together), and how far the
text side holds the two captions apart (mean cosine of own and swapped caption features).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eval.order_pairs import load_order_pairs, pair_accuracy, pair_scores

from .caption_order import _SUBJECT_OPENERS, _THEN

DEFAULT_PAIRS = "data/raw/synthetic/annotations/order_pairs/test.json"
DEFAULT_SHARDS = "data/shards/ret_test"


def caption_form(caption: str) -> str:
    """``two-subject`` when the later clause names its own subject, else ``one-subject``."""
    m = _THEN.match(" ".join(caption.split()))
    if m and m.group("b").split()[0].lower() in _SUBJECT_OPENERS:
        return "two-subject"
    return "one-subject"


def bootstrap_ci(wins: np.ndarray, groups: np.ndarray, reps: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of the mean of ``wins`` resampling whole groups (pairs) with replacement."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    means = [100.0 * np.mean(np.concatenate([wins[members[i]] for i in rng.integers(len(members), size=len(members))]))
             for _ in range(reps)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def pair_cosine(found: list[dict], v: torch.Tensor) -> float | None:
    """Mean cosine between the video features of the two clips of each complete pair."""
    members: dict[str, list[int]] = {}
    for i, e in enumerate(found):
        if e.get("pair_id") is not None:
            members.setdefault(str(e["pair_id"]), []).append(i)
    cos = [float(v[a] @ v[b]) for a, b in (ix for ix in members.values() if len(ix) == 2)]
    return float(np.mean(cos)) if cos else None


def score_arm(checkpoint: str, entries: list[dict], shards: str) -> dict:
    from eval.embed import embed_texts, embed_videos
    from train.model import SMAUG

    model = SMAUG.from_pretrained(checkpoint)
    videos = embed_videos(model, shards, keep_frames=False, progress=False)
    index = {k: i for i, k in enumerate(videos.keys)}
    found = [e for e in entries if e["key"] in index]
    if not found:
        raise SystemExit(f"none of the pair keys is in {shards}")
    v = torch.from_numpy(videos.matrix()[[index[e["key"]] for e in found]])
    own = embed_texts(model, [e["caption"] for e in found])
    swapped = embed_texts(model, [e["swapped_caption"] for e in found])
    s_own, s_swap = (v * own).sum(-1), (v * swapped).sum(-1)
    wins = ((s_own > s_swap).double() + 0.5 * (s_own == s_swap).double()).numpy()
    groups = np.array([str(e.get("pair_id") or e["key"]) for e in found])
    forms = np.array([caption_form(e["caption"]) for e in found])
    out = {"checkpoint": checkpoint, "num_clips": len(found),
           "all": {"acc": pair_accuracy(s_own, s_swap), "ci95": bootstrap_ci(wins, groups)},
           "text_cosine_own_swapped": float((own * swapped).sum(-1).mean()),
           "video_cosine_pair": pair_cosine(found, v),
           # Winoground's text / video / group over the complete pairs, as the evaluation scores them
           "winoground": pair_scores(found, s_own, s_swap, own @ v.t())}
    for form in ("one-subject", "two-subject"):
        sel = forms == form
        if sel.any():
            out[form] = {"acc": float(100.0 * wins[sel].mean()), "num_clips": int(sel.sum()),
                         "ci95": bootstrap_ci(wins[sel], groups[sel])}
    return out


def main(argv: list[str] | None = None) -> int:
    from studies.levers import add_model_flags, check_model_flags, use_model_of_flags

    parser = argparse.ArgumentParser(prog="studies.order.analyse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS)
    parser.add_argument("--shards", default=DEFAULT_SHARDS)
    parser.add_argument("--out", default="results/studies/order/summary.json")
    add_model_flags(parser)
    args = parser.parse_args(argv)
    check_model_flags(parser, args)
    use_model_of_flags(args)
    arms = {}
    for spec in args.arm:
        name, sep, ckpt = spec.partition("=")
        if not sep or not name or not ckpt:
            parser.error(f"--arm {spec!r}: expected NAME=CHECKPOINT")
        arms[name] = ckpt
    entries = load_order_pairs(args.pairs)
    result = {"pairs": args.pairs, "shards": args.shards, "chance": 50.0,
              "arms": {name: score_arm(ckpt, entries, args.shards) for name, ckpt in arms.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, r in result["arms"].items():
        parts = [f"all {r['all']['acc']:.1f} [{r['all']['ci95'][0]:.1f}, {r['all']['ci95'][1]:.1f}]"]
        parts += [f"{f} {r[f]['acc']:.1f} (n={r[f]['num_clips']})" for f in ("one-subject", "two-subject") if f in r]
        w = r.get("winoground")
        if w:
            parts.append(f"winoground text/video/group {w['text']:.0f}/{w['video']:.0f}/{w['group']:.0f} of {w['num_pairs']}")
        print(f"{name:24s} " + "; ".join(parts) + f"; cos text {r['text_cosine_own_swapped']:.3f}"
              f" video {r['video_cosine_pair'] or float('nan'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
