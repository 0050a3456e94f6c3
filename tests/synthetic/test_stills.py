"""The benchmark's still-image caption set: a frame of each train clip, captions of a picture,
and both of its formats (CC3M TSV, COCO JSON) through `python -m preprocess` with every row
accounted for."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import REPO_ROOT
from pipeline.synthetic.render import render_frame
from pipeline.synthetic.scene import COLOURS, SHAPES, scene_from_meta
from pipeline.synthetic.stills import COCO, TSV

# Words that tell time or motion: a picture's caption has none of them.
TEMPORAL = re.compile(r"\b(then|first|before|after|afterwards|while|moves?|slides?|grows?|shrinks?|rotates?|"
                      r"spins?|turns?|appears?|disappears?|becomes?|changes?|stays?|still|drops?|rises?|"
                      r"vanishes|expands|contracts|travels|drifts|sinks|floats)\b")


@pytest.fixture(scope="module")
def stills(tiny_dataset, members_of):
    members = members_of(tiny_dataset / "stills.tar")
    coco = json.loads((tiny_dataset / COCO).read_text())
    rows = [line.split("\t") for line in (tiny_dataset / TSV).read_text().splitlines()]
    return members, coco, rows


def test_one_frame_of_each_train_clip_with_picture_captions(tiny_dataset, tiny_meta, stills):
    members, coco, rows = stills
    train = [c for c in tiny_meta["clips"] if c["split"] == "train"]
    assert sorted(members) == [f"stills/{c['stem']}.png" for c in train] == list(members)  # sorted tar
    assert [r[1] for r in rows] == list(members)  # CC3M: caption<TAB>file, one row per image
    images = {im["file_name"]: im for im in coco["images"]}
    assert set(images) == set(members)
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["caption"])
    for clip in train:
        name = f"stills/{clip['stem']}.png"
        im = images[name]
        frame = np.asarray(Image.open(io.BytesIO(members[name])))
        # the pixels are the scene's frame, losslessly (preprocess makes the JPEG)
        assert np.array_equal(frame, render_frame(scene_from_meta(clip), im["frame"]))
        captions = by_image[im["id"]]
        assert len(captions) == len(set(captions)) >= 2
        assert rows[list(members).index(name)][0] == captions[0]  # the TSV holds the canonical one
        for text in captions:
            assert not TEMPORAL.search(text), text
            # it names a shape and a colour the frame shows (colour synonyms aside, canonical wording)
        canonical = captions[0]
        assert any(s in canonical for s in SHAPES) and any(c in canonical for c in COLOURS), canonical


@pytest.mark.parametrize("annotations, rows_per_image", [(TSV, 1), (COCO, None)])
def test_both_formats_go_through_preprocess_with_every_row_accounted_for(tiny_dataset, tiny_meta, stills,
                                                                         tmp_path, annotations, rows_per_image):
    members, coco, _ = stills
    out = tmp_path / "shards"
    done = subprocess.run([sys.executable, "-m", "preprocess", "--annotations", str(tiny_dataset / annotations),
                           "--videos", str(tiny_dataset / "stills.tar"), "--out", str(out), "--workers", "1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = len(members) if rows_per_image else len(coco["annotations"])
    stats = pq.read_table(out / "stats.parquet").to_pandas()
    assert len(stats) == rows and (stats.status == "ok").all()  # one stats row per input row
    summary = json.loads((out / "stats_summary.json").read_text())
    assert summary["rows"] == summary["ok"] == rows and summary["failed"] == 0
    train = {c["stem"] for c in tiny_meta["clips"] if c["split"] == "train"}
    assert set(stats.key) == train
    # the shards hold one-frame JPEG samples with all their captions
    import webdataset as wds

    samples = list(wds.WebDataset([str(p) for p in sorted(out.glob("shard-*.tar"))], shardshuffle=False))
    assert {s["__key__"] for s in samples} == train
    for s in samples:
        meta = json.loads(s["json"])
        assert s["jpg"][:3] == b"\xff\xd8\xff" and meta["media"] == "image" and meta["video"]["num_frames"] == 1
    per_sample = {len(json.loads(s["json"])["captions"]) for s in samples}
    assert per_sample == ({1} if rows_per_image else {len(a) for a in _captions_per_image(coco)})


def _captions_per_image(coco):
    out = {}
    for a in coco["annotations"]:
        out.setdefault(a["image_id"], []).append(a)
    return list(out.values())
