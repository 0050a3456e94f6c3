"""Annotation files in the formats of the public datasets, and the deterministic tar.

Layout (docs/design.md, "Built-in synthetic benchmark")::

    videos.tar                                   videos/<stem>.<ext>
    annotations/webvid_{train,val}.csv           WebVid-2M
    annotations/msrvtt/MSR_VTT.json              MSRVTT (all splits)
    annotations/msrvtt/msrvtt_ret_{split}.json   MSRVTT layout, one split each
    annotations/msrvtt_qa/{split}.json           MSRVTT-QA
    annotations/tgif_qa/action_{train,test}.jsonl  TGIF-QA Action (five options)
    annotations/order_pairs/{val,test}.json      temporal-order pairs (eval.retrieval.order_pairs)
    annotations/msrvtt_mc/msrvtt_mc_test.json    MSRVTT-MC (Singularity JSON): 5 candidate captions per test clip
    annotations/lsmdc/LSMDC16_FIB_test.csv       LSMDC-FiB (tab-separated): a caption with one word blanked
    meta.json                                    ground truth per clip
    stills.tar + annotations/stills/             still frames of the train clips, CC3M + COCO (stills.py)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Iterable

from pipeline.config import to_dict
from pipeline.synthetic.caption_tests import write_caption_tests
from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.plan import PRETRAIN, SPLITS, ClipPlan

WEBVID_COLUMNS = ("videoid", "contentUrl", "duration", "page_dir", "name")
PAGE_DIR = "synthetic"


def iso_duration(seconds: float) -> str:
    """WebVid's duration field: whole seconds as ISO-8601, e.g. ``PT00H00M04S``."""
    s = int(round(seconds))
    return f"PT{s // 3600:02d}H{s % 3600 // 60:02d}M{s % 60:02d}S"


def _dump_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")


class DeterministicTar:
    """A tar whose bytes depend only on the member names and contents added, in order."""

    def __init__(self, path: Path):
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)
        self._last = ""

    def add(self, name: str, data: bytes) -> None:
        if name <= self._last:
            raise ValueError(f"tar members must be added in sorted order: {name!r} after {self._last!r}")
        self._last = name
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


def write_webvid(root: Path, clips: list[ClipPlan], pretrain: list[ClipPlan] = ()) -> None:
    """One row per caption (WebVid has one per video; readers group rows by ``videoid``); the
    extra pre-training clips follow the benchmark's train clips in webvid_train.csv."""
    for split in ("train", "val"):
        path = root / "annotations" / f"webvid_{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(WEBVID_COLUMNS)
            rows = [c for c in clips if c.split == split] + (list(pretrain) if split == "train" else [])
            for c in rows:
                for text in c.captions:
                    writer.writerow((c.stem, c.member, iso_duration(c.scene.duration), PAGE_DIR, text))


def _msrvtt(clips: list[ClipPlan]) -> dict[str, Any]:
    videos, annotations = [], []
    for c in clips:
        videos.append({"video_id": c.stem, "split": c.split, "id": int(c.stem.split("_")[1]),
                       "url": c.member, "start time": 0.0, "end time": round(c.scene.duration, 3),
                       "category": 0})
        for text in c.captions:
            annotations.append({"image_id": c.stem, "caption": text, "id": len(annotations)})
    info = {"description": "SMAUG synthetic benchmark, MSR-VTT layout", "version": "1.0"}
    return {"info": info, "videos": videos, "annotations": annotations}


def write_msrvtt(root: Path, clips: list[ClipPlan]) -> None:
    folder = root / "annotations" / "msrvtt"
    _dump_json(folder / "MSR_VTT.json", _msrvtt(clips))
    for split in SPLITS:
        _dump_json(folder / f"msrvtt_ret_{split}.json", _msrvtt([c for c in clips if c.split == split]))


def write_msrvtt_qa(root: Path, clips: list[ClipPlan]) -> None:
    for split in SPLITS:
        rows = []
        for c in (c for c in clips if c.split == split):
            for qa in c.qa:
                rows.append({"question": qa.question, "answer": qa.answer, "video_id": c.stem,
                             "answer_type": qa.answer_type, "id": len(rows)})
        _dump_json(root / "annotations" / "msrvtt_qa" / f"{split}.json", rows)


def write_tgif_qa(root: Path, clips: list[ClipPlan]) -> None:
    """TGIF-QA has no val file; val clips appear in the other formats only."""
    folder = root / "annotations" / "tgif_qa"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with (folder / f"action_{split}.jsonl").open("w") as f:
            for c in (c for c in clips if c.split == split):
                for mc in c.mc:
                    f.write(json.dumps({"gif_name": c.stem, "question": mc.question,
                                        "options": list(mc.options), "answer": mc.answer,
                                        "answer_type": mc.answer_type}) + "\n")


def order_pair_entries(clips: list[ClipPlan]) -> list[dict[str, str]]:
    """One entry per clip of a temporal-order pair: its key, its own canonical caption and its
    partner's, which names the same two events in the other order.

    The format is generic, so a user can write one for their own test set: a JSON list of
    ``{"key": <video key in the shards>, "caption": <the right text>, "swapped_caption": <the
    same text with the order of events swapped>}``; ``pair_id`` is optional. Evaluation scores
    each clip against both texts (chance 50%).
    """
    by_pair: dict[str, list[ClipPlan]] = {}
    for c in clips:
        if c.pair_id:
            by_pair.setdefault(c.pair_id, []).append(c)
    out = []
    for c in clips:
        partners = [p for p in by_pair.get(c.pair_id or "", []) if p.stem != c.stem]
        if partners:
            out.append({"key": c.stem, "caption": c.captions[0], "swapped_caption": partners[0].captions[0],
                        "pair_id": c.pair_id})
    return out


def write_order_pairs(root: Path, clips: list[ClipPlan]) -> None:
    """Val and test only: the pairs are an evaluation, not training data."""
    for split in ("val", "test"):
        _dump_json(root / "annotations" / "order_pairs" / f"{split}.json",
                   order_pair_entries([c for c in clips if c.split == split]))


def clip_meta(c: ClipPlan) -> dict[str, Any]:
    s = c.scene
    return {
        "stem": c.stem, "file": c.member, "split": c.split, "held_out": c.held_out,
        "pair_id": c.pair_id, "container": c.format.container, "codec": c.format.codec,
        "fps": s.fps, "num_frames": s.num_frames, "width": s.width, "height": s.height,
        "duration": s.duration,
        "background": dataclasses.asdict(s.background),
        "objects": [dataclasses.asdict(o) for o in s.objects],
        "events": [dataclasses.asdict(e) for e in s.events],
        "captions": list(c.captions),
        "qa": [dataclasses.asdict(q) for q in c.qa],
        "mc": [dataclasses.asdict(m) for m in c.mc],
    }


def write_meta(root: Path, clips: list[ClipPlan], held_out: list[tuple[str, str]],
               cfg: SyntheticConfig, pretrain: list[ClipPlan] = ()) -> None:
    config = to_dict(cfg)
    config.pop("workers")  # not part of the content: any worker count gives the same files
    config.pop("out_dir")
    meta = {
        "config": config,
        "held_out_combinations": [list(c) for c in held_out],
        "counts": {split: sum(c.split == split for c in clips) for split in SPLITS},
        "clips": [clip_meta(c) for c in clips],
    }
    if pretrain:
        meta["counts"][PRETRAIN] = len(pretrain)
        meta["pretrain_clips"] = [clip_meta(c) for c in pretrain]
    else:
        # A benchmark without extra clips is byte for byte the one made before the key existed
        # (so its DVC hash, and every result downstream of it, stays valid).
        config.pop("pretrain_clips")
    _dump_json(root / "meta.json", meta)


def write_annotations(root: Path, clips: list[ClipPlan], held_out, cfg: SyntheticConfig,
                      pretrain: list[ClipPlan] = ()) -> None:
    """The benchmark's annotation files; ``pretrain`` clips appear in webvid_train.csv and
    meta.json only."""
    write_webvid(root, clips, pretrain)
    write_msrvtt(root, clips)
    write_msrvtt_qa(root, clips)
    write_tgif_qa(root, clips)
    write_order_pairs(root, clips)
    write_caption_tests(root, [clip_meta(c) for c in clips], cfg.seed)
    write_meta(root, clips, held_out, cfg, pretrain)


def write_videos(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    tar = DeterministicTar(path)
    try:
        for name, data in members:
            tar.add(name, data)
    finally:
        tar.close()
