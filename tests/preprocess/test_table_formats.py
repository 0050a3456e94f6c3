"""Collections described in the shapes people make by hand or that other datasets ship: any
table with a video column and a caption column (CSV, TSV, JSON, JSONL, a JSON object from video
to captions, VATEX's ``videoID`` / ``enCap``) and MSVD's ``<id> <caption>`` lines. Each is
detected without ``--format``, keeps every caption of a video, and a table whose columns name
no video or no caption is refused naming the columns it has."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.formats import AnnotationError, detect_format, read_rows, table_columns
from preprocess.ingest import build_manifest

from .helpers import assert_error_line, run_cli


def manifest(ann: Path, videos: Path, tmp_path: Path, **kw) -> dict[str, dict]:
    out = build_manifest(ann, videos, tmp_path / "m" / f"{ann.stem}.parquet", **kw)
    return {r["video_id"]: r for r in pq.read_table(out).to_pylist()}


@pytest.fixture()
def videos(tmp_path) -> Path:
    """Placeholder files: ingest joins by name only (probing happens when sharding)."""
    folder = tmp_path / "videos"
    for rel in ["clips/a1.mp4", "b2.webm", "c3.mkv", "-4wsuPCjDBc_5_15.avi", "abc_000010_000020.mp4"]:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"x")
    return folder


def test_column_names_are_matched_in_any_case_and_spelling():
    assert table_columns(["Video Path", "Caption"]) == ("Video Path", "Caption")
    assert table_columns(["videoID", "enCap", "chCap"]) == ("videoID", "enCap")
    assert table_columns(["id", "video", "text"]) == ("video", "text")  # the more specific name wins
    assert table_columns(["clip-id", "DESCRIPTION"]) == ("clip-id", "DESCRIPTION")
    assert table_columns(["foo", "caption"]) == (None, "caption")
    assert table_columns(["video", "label"]) == ("video", None)


def test_a_csv_with_paths_ids_quoted_commas_and_its_own_split(tmp_path, videos):
    ann = tmp_path / "captions.csv"
    ann.write_text("video_path,caption,split\n"
                   "clips/a1.mp4,a red ball rolls,train\n"
                   "b2,\"slowly, a blue kite rises\",train\n"
                   "c3,held for testing,test\n"
                   "clips/a1.mp4,the ball rolls left,train\n")
    assert detect_format(ann) == "table"
    m = manifest(ann, videos, tmp_path)
    assert m["a1"]["captions"] == ["a red ball rolls", "the ball rolls left"]
    assert m["a1"]["source"] == "clips/a1.mp4" and m["a1"]["error"] is None
    assert m["b2"]["captions"] == ["slowly, a blue kite rises"] and m["b2"]["source"] == "b2.webm"
    assert m["c3"]["split"] == "test"
    assert set(manifest(ann, videos, tmp_path, split="train")) == {"a1", "b2"}


def test_tsv_json_jsonl_and_a_mapping_read_alike(tmp_path, videos):
    tsv = tmp_path / "list.tsv"
    tsv.write_text("Clip ID\tText\na1\ta red ball rolls\nb2\ta kite, then a bird\n")
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text('{"filename": "clips/a1.mp4", "description": "a red ball rolls"}\n'
                     '{"filename": "b2.webm", "description": "a kite, then a bird"}\n')
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"video": "a1", "captions": ["a red ball rolls"]},
                                  {"video": "b2", "captions": ["a kite, then a bird"]}]))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"a1": "a red ball rolls", "b2": ["a kite, then a bird"]}))
    for ann in (tsv, jsonl, listed, mapping):
        assert detect_format(ann) == "table", ann.name
        m = manifest(ann, videos, tmp_path)
        assert {k: (v["captions"], v["error"]) for k, v in m.items()} == {
            "a1": (["a red ball rolls"], None), "b2": (["a kite, then a bird"], None)}, ann.name


def test_vatex_keeps_its_english_captions(tmp_path, videos):
    ann = tmp_path / "vatex_training_v1.0.json"
    ann.write_text(json.dumps([{"videoID": "abc_000010_000020", "enCap": ["A man plays.", "Someone plays a drum."],
                                "chCap": ["一个男人在演奏。"]}]))
    assert detect_format(ann) == "table"
    m = manifest(ann, videos, tmp_path)
    assert m["abc_000010_000020"]["captions"] == ["A man plays.", "Someone plays a drum."]


def test_msvd_description_lines(tmp_path, videos):
    ann = tmp_path / "AllVideoDescriptions.txt"
    ann.write_text("###############\n# MSVD descriptions\n###############\n"
                   "-4wsuPCjDBc_5_15 a squirrel is eating a peanut in it's shell.\n"
                   "-4wsuPCjDBc_5_15 a chipmunk is eating.\n"
                   "zzzMissing_1_2 a clip nobody has\n")
    assert detect_format(ann) == "msvd"
    m = manifest(ann, videos, tmp_path)
    assert m["-4wsuPCjDBc_5_15"]["captions"] == ["a squirrel is eating a peanut in it's shell.",
                                                  "a chipmunk is eating."]
    assert m["zzzMissing_1_2"]["error"].startswith("missing file")


def test_a_table_without_a_video_or_caption_column_is_refused_naming_its_columns(tmp_path, videos):
    ann = tmp_path / "odd.csv"
    ann.write_text("name_of_thing,words\na1,a red ball\n")
    with pytest.raises(AnnotationError, match="a table needs a video column"):
        detect_format(ann)
    with pytest.raises(AnnotationError, match=r"no video and no caption column among \['name_of_thing', 'words'\]"):
        list(read_rows(ann, "table")[1])
    proc = run_cli("--annotations", str(ann), "--videos", str(videos), "--format", "table",
                   "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert_error_line(proc, "no video and no caption column", "name_of_thing")
    assert not (tmp_path / "o" / "stats.parquet").exists()


def test_a_table_of_real_videos_becomes_shards(media, tmp_path):
    """End to end through the CLI: a hand-made CSV naming files by path, one of them broken."""
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    shutil.copy(media["good"]["h264"], videos / "sub" / "first.mp4")
    shutil.copy(media["good"]["vp9"], videos / "second.webm")
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    ann = tmp_path / "mine.csv"
    ann.write_text("Video,Caption\nsub/first.mp4,a test pattern\nsecond.webm,a second pattern\n"
                   "broken.mp4,not a video at all\n")
    run_cli("--annotations", str(ann), "--videos", str(videos), "--out", str(tmp_path / "out"),
            "--workers", "1")
    stats = {r["video_id"]: r for r in pq.read_table(tmp_path / "out" / "stats.parquet").to_pylist()}
    assert {k: v["status"] for k, v in stats.items()} == {"first": "ok", "second": "ok", "broken": "failed"}
    assert list((tmp_path / "out").glob("*.tar"))
