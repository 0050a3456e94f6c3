"""The preprocessing progress bar counts videos only: it ends at exactly its total."""

from __future__ import annotations

import json
import re

from preprocess.api import build_manifest, finalize, plan_shards, process_shards
from preprocess.config import PreprocessConfig


def test_bar_ends_at_its_total_with_several_shards(media, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    stems = ("h264", "vp9", "mpeg4")
    for stem in stems:
        src = media["good"][stem]
        (videos / src.name).write_bytes(src.read_bytes())
    ann = tmp_path / "MSR_VTT.json"
    ann.write_text(json.dumps({"annotations": [{"image_id": s, "caption": f"c {s}"} for s in stems]}))
    out = tmp_path / "out"
    cfg = PreprocessConfig(shard_samples=1, workers=2, cache_dir=None)  # 3 shards of one video
    build_manifest(ann, videos, out / "manifest.parquet", cfg=cfg)
    capsys.readouterr()
    process_shards(out, plan_shards(out, cfg), cfg, progress=True)
    finalize(out)
    err = capsys.readouterr().err
    counts = re.findall(r"(\d+)/(\d+) \[", err)
    assert counts, "no progress bar was drawn"
    # past its total tqdm drops the total: "5video [..." (writers counted too ended at 6)
    assert not re.search(r"\d+video \[", err), err[-300:]
    assert counts[-1] == ("3", "3"), counts
