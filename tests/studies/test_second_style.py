"""The second-style study's generator: a tiny collection that `python -m preprocess` reads with
every row ok, captions true of their videos, held-out pairs kept out of training, and the same
seed giving the same annotations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.formats import detect_format, read_rows
from studies.second_style.generate import ACTIONS, COLOURS, KINDS, _attr_key, generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("second_style") / "data"
    meta = generate(out, 6, 3, seed=3, workers=2, progress=False)
    return out, meta


def _mentions(text: str, phrases) -> bool:
    return any(re.search(r"(?<![\w-])" + re.escape(p.lower()) + r"(?!\w)", text.lower()) for p in phrases)


def test_layout_and_formats(tiny):
    out, meta = tiny
    vids = sorted(p.name for p in (out / "videos").iterdir())
    assert len(vids) == 9 and {Path(v).suffix for v in vids} <= {".mp4", ".webm", ".mkv"}
    assert detect_format(out / "train.json") == "msrvtt"
    assert detect_format(out / "train.jsonl") == "clipbert"
    assert detect_format(out / "test.csv") == "msrvtt_1ka"
    assert len(list(read_rows(out / "train.json")[1])) == 6 * 5
    assert len(list(read_rows(out / "test.csv")[1])) == 3
    assert meta["num_train"] == 6 and meta["num_test"] == 3


def test_preprocess_reads_every_row_ok(tiny, tmp_path):
    """The test list goes through the whole of `python -m preprocess` (3 videos: every row ok);
    the training file through its ingest stage (format, rows, every video found, no row error)."""
    out, _ = tiny
    run = lambda *args: subprocess.run([sys.executable, "-m", "preprocess", *args, "--workers", "1", "--no-progress"],
                                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    r = run("--annotations", str(out / "test.csv"), "--videos", str(out / "videos"), "--out", str(tmp_path / "test"))
    assert r.returncode == 0, r.stderr[-2000:]
    stats = pq.read_table(tmp_path / "test" / "stats.parquet").to_pandas()
    assert len(stats) == 3 and (stats["status"] == "ok").all(), stats.to_dict("records")
    r = run("--annotations", str(out / "train.json"), "--videos", str(out / "videos"), "--stage", "ingest",
            "--manifest", str(tmp_path / "train.parquet"))
    assert r.returncode == 0, r.stderr[-2000:]
    man = pq.read_table(tmp_path / "train.parquet").to_pandas()
    assert len(man) == 6 and man["error"].isna().all(), man.to_dict("records")
    assert sorted(len(c) for c in man["captions"]) == [5] * 6


def test_captions_are_true_of_their_videos(tiny):
    _, meta = tiny
    for clip in meta["clips"]:
        present = {o["kind"] for o in clip["objects"]}
        for i, cap in enumerate(clip["captions"]):
            for kind, (_, nouns) in KINDS.items():   # no object is named that the video lacks
                if kind not in present:
                    assert not _mentions(cap, nouns), (cap, clip["objects"])
            if i == 0:   # the first caption (the test caption) names every object fully
                for o in clip["objects"]:
                    assert _mentions(cap, KINDS[o["kind"]][1]), (cap, o)
                    assert _mentions(cap, COLOURS[o["colour"]][1]), (cap, o)
                    assert _mentions(cap, ACTIONS[o["action"]][0] + ACTIONS[o["action"]][1]), (cap, o)
        assert len(clip["captions"]) == (1 if clip["split"] == "test" else 5)


def test_held_out_pairs_and_distinct_test_scenes(tiny):
    _, meta = tiny
    held = {tuple(p) for p in meta["held_out_pairs"]}
    train = [c for c in meta["clips"] if c["split"] == "train"]
    test = [c for c in meta["clips"] if c["split"] == "test"]
    assert not any((o["kind"], o["colour"]) in held for c in train for o in c["objects"])
    assert len({_attr_key(c) for c in test}) == len(test)
    assert meta["test_with_held_out_pair"] >= 1


def test_same_seed_same_annotations(tmp_path):
    a = generate(tmp_path / "a", 20, 5, seed=11, progress=False, render=False)
    b = generate(tmp_path / "b", 20, 5, seed=11, progress=False, render=False)
    c = generate(tmp_path / "c", 20, 5, seed=12, progress=False, render=False)
    for name in ("train.json", "train.jsonl", "test.csv", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test.csv").read_bytes() != (tmp_path / "c" / "test.csv").read_bytes()
    assert a == b and a != c
