"""Facts about the second-style collection and its runs, gathered into one JSON.

    python -m studies.second_style.analyse --data runs/second_style/data --runs runs/second_style \
        --out results/studies/second_style/summary.json

- captions: token lengths under the default tokenizer, the share the loader cuts at
  loader.max_len (32), and how many test captions, once cut, still name every object of their
  video (kind, colour and action) and still single out their video among the 100;
- shards: stats_summary.json of the train and test shards (failed rows and their reasons);
- runs: each run folder's eval and pre-training metrics (R@1/5/10, median rank, R@1 95% CI,
  train wall seconds, clips/s, steps, image size).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from studies.second_style.generate import ACTIONS, COLOURS, KINDS


def _mentions(text: str, phrases) -> bool:
    return any(re.search(r"(?<![\w-])" + re.escape(p.lower()) + r"(?!\w)", text.lower()) for p in phrases)


def _named(text: str, clip_objects) -> list[tuple]:
    """The (kind, colour, action) triples of the clip that ``text`` names all three parts of."""
    return [(o["kind"], o["colour"], o["action"]) for o in clip_objects
            if _mentions(text, KINDS[o["kind"]][1]) and _mentions(text, COLOURS[o["colour"]][1])
            and _mentions(text, ACTIONS[o["action"]][0] + ACTIONS[o["action"]][1])]


def caption_facts(data: Path, max_len: int = 32) -> dict:
    from train.data.text import load_tokenizer

    tok = load_tokenizer(None)
    meta = json.loads((data / "meta.json").read_text())
    train = [c for c in meta["clips"] if c["split"] == "train"]
    test = [c for c in meta["clips"] if c["split"] == "test"]
    out = {}
    for name, clips in (("train", train), ("test", test)):
        caps = [t for c in clips for t in c["captions"]]
        lens = np.array([len(tok(t)["input_ids"]) for t in caps])
        out[name] = {"captions": len(caps), "distinct": len(set(caps)), "tokens_mean": round(float(lens.mean()), 1),
                     "tokens_median": float(np.median(lens)), "tokens_max": int(lens.max()),
                     f"share_over_{max_len}": round(float((lens > max_len).mean()), 3)}
    # test captions as the loader sees them: the first max_len tokens ([CLS] and [SEP] included)
    cut_full, cut_unique = 0, 0
    cut_texts = []
    for c in test:
        ids = tok(c["captions"][0], truncation=True, max_length=max_len)["input_ids"]
        cut_texts.append(tok.decode(ids, skip_special_tokens=True))
    for c, text in zip(test, cut_texts):
        named = _named(text, c["objects"])
        cut_full += len(named) == len(c["objects"])
        # does any other test video also fit every triple this cut caption names?
        others = [d for d in test if d is not c and all(t in [(o["kind"], o["colour"], o["action"]) for o in d["objects"]]
                                                         for t in named)]
        cut_unique += bool(named) and not others
    out["test_cut"] = {"max_len": max_len, "name_every_object": cut_full,
                       "single_out_their_video_by_named_objects": cut_unique, "of": len(test),
                       "example": {"caption": test[0]["captions"][0], "as_cut": cut_texts[0]}}
    out["objects_per_clip"] = {str(k): sum(len(c["objects"]) == k for c in meta["clips"]) for k in (2, 3)}
    return out


def run_facts(run: Path) -> dict:
    res: dict = {"run_dir": str(run)}
    ev = run / "results" / "eval" / "smaug.json"
    em = run / "results" / "metrics" / "eval-smaug.json"
    pm = run / "results" / "metrics" / "pretrain-smaug.json"
    for key, p in (("eval", ev), ("eval_metrics", em), ("pretrain_metrics", pm)):
        if p.exists():
            res[key] = json.loads(p.read_text())
    return res


RUNS = {  # run folder name under runs/second_style: what it is
    "default_s0": {"recipe": "params.yaml default (128 px, 4 frames)", "seed": 0, "steps": 800, "image_size": 128},
    "default_s1": {"recipe": "params.yaml default (128 px, 4 frames)", "seed": 1, "steps": 800, "image_size": 128},
    "old_default_s0": {"recipe": "previous default (96 px, 400 steps)", "seed": 0, "steps": 400, "image_size": 96},
}


def headline(run: Path) -> dict | None:
    f = run_facts(run)
    if "eval" not in f:
        return None
    n = f["eval"]["zero_shot"]["retrieval"]["normal"]
    t2v = n["vtc"]["t2v"]
    pm = f.get("pretrain_metrics", {})
    out = {"t2v_R@1": t2v["R@1"], "t2v_R@1_ci95": t2v.get("R@1_ci95"), "t2v_R@5": t2v["R@5"],
           "t2v_R@10": t2v["R@10"], "t2v_MdR": t2v["MdR"], "test_videos": n["num_videos"],
           "chance_R@1": n["chance_R@1"],
           "v2t_R@1": n["vtc"].get("v2t", {}).get("R@1"),
           "vtm_t2v_R@1": n.get("vtm", {}).get("t2v", {}).get("R@1"),
           "train_wall_s": pm.get("train_wall_s"), "clips_per_s": pm.get("clips_per_s"),
           "pretrain_steps_done": pm.get("steps"), "threads": pm.get("threads"),
           "subsets_t2v_R@1": subsets(n, run),
           "eval_details": str(run / "results" / "eval" / "smaug.json"),
           "pretrain_metrics": str(run / "results" / "metrics" / "pretrain-smaug.json")}
    return out


def subsets(n: dict, run: Path, data: Path = Path("runs/second_style/data")) -> dict:
    """t2v R@1 (VTC) on parts of the test set, from the eval's per-query ranks; query i is the
    i-th test video in key order (= test.csv order)."""
    pq = n.get("per_query")
    meta = json.loads((data / "meta.json").read_text())
    held = {tuple(p) for p in meta["held_out_pairs"]}
    test = sorted((c for c in meta["clips"] if c["split"] == "test"), key=lambda c: c["id"])
    if not pq or len(pq["vtc"]) != len(test):
        return {}
    groups = {"with_held_out_pair": lambda c: any((o["kind"], o["colour"]) in held for o in c["objects"]),
              "without_held_out_pair": lambda c: not any((o["kind"], o["colour"]) in held for o in c["objects"]),
              "two_objects": lambda c: len(c["objects"]) == 2, "three_objects": lambda c: len(c["objects"]) == 3}
    out = {}
    for g, f in groups.items():
        ranks = [pq["vtc"][pq["video"][i]] for i, c in enumerate(test) if f(c)]
        out[g] = {"videos": len(ranks), "R@1": round(100.0 * sum(r == 1 for r in ranks) / len(ranks), 1),
                  "R@10": round(100.0 * sum(r <= 10 for r in ranks) / len(ranks), 1)}
    return out


def shard_facts(shards: Path) -> dict:
    out = {}
    for split in ("train", "test"):
        p = shards / split / "stats_summary.json"
        if p.exists():
            out[split] = json.loads(p.read_text())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("runs/second_style/data"))
    ap.add_argument("--root", type=Path, default=Path("runs/second_style"))
    ap.add_argument("--out", type=Path, default=None, help="summary.json to write (default: print only captions)")
    a = ap.parse_args(argv)
    caps = caption_facts(a.data)
    if a.out is None:
        print(json.dumps(caps, indent=1))
        return 0
    meta = json.loads((a.data / "meta.json").read_text())
    render = json.loads((a.data / "render_stats.json").read_text()) if (a.data / "render_stats.json").exists() else {}
    render.pop("centre_visible", None)
    runs = {}
    for name, what in RUNS.items():
        h = headline(a.root / name)
        status = "done" if h else ("started, not evaluated" if (a.root / name).exists() else "not run")
        runs[name] = {**what, "frames": 4, "status": status, **(h or {})}
    summary = {
        "collection": {"seed": meta["seed"], "train_videos": meta["num_train"], "test_videos": meta["num_test"],
                       "train_captions": caps["train"]["captions"], "chance_R@1": 100.0 / meta["num_test"],
                       "held_out_pairs": meta["held_out_pairs"],
                       "test_videos_with_a_held_out_pair": meta["test_with_held_out_pair"],
                       "render": render},
        "captions": caps,
        "shards": shard_facts(a.root / "shards"),
        "runs": runs,
        "built_in_benchmark_reference": {"recipe": "smaug default", "t2v_R@1": "23.9 +- 0.9 (100 test videos)"},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
