"""Each annotation file parses in its dataset's format and points at real tar members."""

from __future__ import annotations

import csv
import json
import re
import tarfile

import pytest

ANSWER_TYPES = {"color", "shape", "direction", "action", "count", "order"}


@pytest.fixture(scope="module")
def stems(tiny_dataset) -> dict[str, str]:
    with tarfile.open(tiny_dataset / "videos.tar") as tar:
        names = tar.getnames()
    return {n.split("/")[1].rsplit(".", 1)[0]: n for n in names}


@pytest.fixture(scope="module")
def clips(tiny_meta) -> dict[str, dict]:
    return {c["stem"]: c for c in tiny_meta["clips"]}


def test_webvid_csv(tiny_dataset, stems, clips):
    seen = set()
    for split in ("train", "val"):
        with (tiny_dataset / "annotations" / f"webvid_{split}.csv").open(newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == ["videoid", "contentUrl", "duration", "page_dir", "name"]
            rows = list(reader)
        assert rows
        for row in rows:
            clip = clips[row["videoid"]]
            assert clip["split"] == split
            assert row["contentUrl"] == stems[row["videoid"]] == clip["file"]
            m = re.fullmatch(r"PT(\d\d)H(\d\d)M(\d\d)S", row["duration"])
            assert m, row["duration"]
            h, mi, s = map(int, m.groups())
            assert abs(3600 * h + 60 * mi + s - clip["duration"]) <= 0.5
            assert row["page_dir"] == "synthetic"
            assert row["name"] in clip["captions"]
            seen.add(row["videoid"])
    assert seen == {s for s, c in clips.items() if c["split"] in ("train", "val")}


def test_msrvtt_json(tiny_dataset, stems, clips):
    folder = tiny_dataset / "annotations" / "msrvtt"
    full = json.loads((folder / "MSR_VTT.json").read_text())
    assert {v["video_id"] for v in full["videos"]} == set(stems)
    for v in full["videos"]:
        assert v["split"] == clips[v["video_id"]]["split"] and v["url"] == stems[v["video_id"]]
    ids = [a["id"] for a in full["annotations"]]
    assert len(ids) == len(set(ids))
    for a in full["annotations"]:
        assert a["caption"] in clips[a["image_id"]]["captions"]
    assert len(full["annotations"]) == sum(len(c["captions"]) for c in clips.values())
    for split in ("train", "val", "test"):
        part = json.loads((folder / f"msrvtt_ret_{split}.json").read_text())
        assert part["videos"] and all(v["split"] == split for v in part["videos"])
        videos = {v["video_id"] for v in part["videos"]}
        assert {a["image_id"] for a in part["annotations"]} == videos


def test_msrvtt_qa_json(tiny_dataset, clips):
    for split in ("train", "val", "test"):
        rows = json.loads((tiny_dataset / "annotations" / "msrvtt_qa" / f"{split}.json").read_text())
        assert rows
        assert [r["id"] for r in rows] == list(range(len(rows)))
        for r in rows:
            assert set(r) == {"question", "answer", "video_id", "answer_type", "id"}
            assert clips[r["video_id"]]["split"] == split
            assert r["answer_type"] in ANSWER_TYPES and r["answer"] and r["question"].endswith("?")


def test_qa_answers_agree_with_the_scene(clips):
    for clip in clips.values():
        for qa in clip["qa"]:
            if qa["answer_type"] == "count":
                assert qa["answer"] == ["one", "two", "three"][len(clip["objects"]) - 1]
            if qa["answer_type"] == "direction":
                assert qa["answer"] in {e["param"] for e in clip["events"] if e["kind"] == "move"}
            if qa["answer_type"] == "shape":
                assert qa["answer"] == clip["objects"][clip["events"][0]["obj"]]["shape"]


def test_tgif_qa_jsonl(tiny_dataset, clips):
    kinds = set()
    for split in ("train", "test"):
        lines = (tiny_dataset / "annotations" / "tgif_qa" / f"action_{split}.jsonl").read_text().splitlines()
        assert lines
        for line in lines:
            item = json.loads(line)
            clip = clips[item["gif_name"]]
            assert clip["split"] == split
            assert len(item["options"]) == 5 and len(set(item["options"])) == 5
            assert isinstance(item["answer"], int) and 0 <= item["answer"] < 5
            if item["answer_type"] == "caption":
                assert item["options"][item["answer"]] == clip["captions"][0]
                if len(clip["events"]) == 2:  # the temporal-order swap is among the distractors
                    swapped = [o for i, o in enumerate(item["options"]) if i != item["answer"]
                               and sorted(o.replace(",", "").split()) == sorted(clip["captions"][0].replace(",", "").split())]
                    assert swapped, item
            kinds.add(item["answer_type"])
    assert kinds == {"caption", "order"}
