"""Ingest never stops on a row: any bytes, any field length, broken quoting, wrong field counts.

Each bad row becomes a row with its reason and the file line it starts on; the rows around it
are read as if it were not there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.api import build_manifest
from preprocess.config import PreprocessConfig

HEADER = b"videoid,contentUrl,duration,page_dir,name\n"


@pytest.fixture()
def videos(tmp_path) -> Path:
    folder = tmp_path / "videos"
    (folder / "pg1").mkdir(parents=True)
    for vid in ("1001", "1002", "1003", "1007", "1008"):
        (folder / "pg1" / f"{vid}.mp4").write_bytes(b"x")  # ingest joins by name only
    return folder


def rows_by_line(ann: Path, videos: Path) -> dict[int, dict]:
    """file line -> {video_id, key, error, caption} for every input row in the manifest."""
    path = build_manifest(ann, videos, ann.parent / "m.parquet", cfg=PreprocessConfig(workers=1))
    rows = {}
    for sample in pq.read_table(path).to_pylist():
        for row, origin, row_error in zip(sample["rows"], sample["origins"], sample["row_errors"]):
            line = int(origin.rsplit(" ", 1)[1])
            assert line not in rows, origin
            rows[line] = {"row": row, "video_id": sample["video_id"], "error": row_error or sample["error"],
                          "captions": sample["captions"]}
    assert sorted(r["row"] for r in rows.values()) == list(range(len(rows)))  # one row each, none lost
    return rows


def test_bytes_that_are_not_utf8_in_the_video_id_or_page_dir_fail_that_row(tmp_path, videos):
    ann = tmp_path / "webvid.csv"
    ann.write_bytes(HEADER + b"1001,u,d,pg1,a good row\n"
                    b"caf\xe9\xff,u,d,pg1,an id that is not UTF-8\n"
                    b"1002,u,d,pg\xff,a page_dir that is not UTF-8\n"
                    b"1003,u,d,pg1,a good row after them\n")
    rows = rows_by_line(ann, videos)
    assert rows[2]["error"] is None and rows[5]["error"] is None
    assert rows[3]["error"] == "video id 'caf\ufffd\ufffd' is not valid UTF-8 (undecodable bytes)"
    assert rows[4]["error"].startswith("video path (page_dir / file name) 'pg\ufffd/1002.mp4' is not valid UTF-8")


def test_undecodable_text_in_json_records_fails_that_row(tmp_path, videos):
    ann = tmp_path / "clips.jsonl"
    ann.write_bytes(b'{"clip_name": "1001", "caption": "fine"}\n'
                    b'{"clip_name": "\\ud800x", "caption": "a lone surrogate escape"}\n'
                    b'{"clip_name": "10\xff02", "caption": "a raw byte"}\n')
    rows = rows_by_line(ann, videos)
    assert rows[1]["error"] is None
    assert "is not valid UTF-8" in rows[2]["error"] and "is not valid UTF-8" in rows[3]["error"]


def test_a_field_over_128_kib_is_a_too_long_caption_not_a_crash(tmp_path, videos):
    ann = tmp_path / "webvid.csv"
    ann.write_bytes(HEADER + b"1001,u,d,pg1,\"" + b"long " * 40_000 + b"\"\n1002,u,d,pg1,next row\n")
    rows = rows_by_line(ann, videos)
    assert rows[2]["error"].startswith("caption too long (199999 characters")
    assert rows[3]["error"] is None


def test_origins_are_file_lines_and_an_unterminated_quote_is_reported(tmp_path, videos):
    ann = tmp_path / "webvid.csv"
    ann.write_bytes(HEADER + b'1001,u,d,pg1,"a caption\nover two lines"\n'
                    b'1002,u,d,pg1,"a quote that never closes\n'
                    b'1007,u,d,pg1,"a row it swallowed"\n'
                    b"1008,u,d,pg1,a row after\n")
    rows = rows_by_line(ann, videos)
    assert sorted(rows) == [2, 4, 5, 6]
    assert rows[2]["error"] is None and rows[2]["captions"] == ["a caption over two lines"]
    assert rows[4]["error"].startswith("unterminated quote: a quoted field opened on line 4 never closes")
    assert rows[5]["error"] is None and rows[5]["captions"] == ["a row it swallowed"]
    assert rows[6]["error"] is None and rows[6]["video_id"] == "1008"


def test_rows_with_extra_or_missing_columns_fail_with_the_reason(tmp_path, videos):
    ann = tmp_path / "webvid.csv"
    ann.write_bytes(HEADER + b"1001,u,d,pg1,a caption, with an unquoted comma\n1002,u,d\n1003,u,d,pg1,fine\n")
    rows = rows_by_line(ann, videos)
    assert rows[2]["error"] == "row has 6 fields, the header names 5 (an unquoted ',' in a caption, or a missing field?)"
    assert rows[3]["error"].startswith("row has 3 fields")
    assert rows[4]["error"] is None


def test_random_bytes_in_every_field_never_stop_ingest(tmp_path, videos):
    rng = random.Random(13)
    alphabet = [b"a", b"1", b",", b'"', b"\n", b"\r\n", b"\xff", b"\xe9", b"\x00", b"\t", b" ", b"\xc3\xa9", b'""']
    lines = [HEADER]
    for _ in range(300):
        fields = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(5)]
        lines.append(b",".join(fields) + b"\n")
    ann = tmp_path / "webvid.csv"
    ann.write_bytes(b"".join(lines))
    rows = rows_by_line(ann, videos)
    assert rows and max(rows) <= ann.read_bytes().count(b"\n") + 1
    assert json.dumps([r["error"] for r in rows.values()])  # every reason is storable text


def test_in_memory_and_dask_routes_write_the_same_manifest(tmp_path, videos):
    """Small collections skip dask (its import is most of a small job's start-up): same bytes out."""
    rng = random.Random(5)
    lines = [HEADER]
    for n in range(120):  # repeated ids and texts (duplicates), ids with no video, random bytes
        vid = rng.choice([b"1001", b"1002", b"1003", b"1007", b"1008", b"9999", b"10 01", b"\xff1"])
        text = rng.choice([b"a red circle", b"a blue square", b'"quoted, comma"', b"\xe9t\xe9", b""])
        lines.append(vid + b",u,d,pg1," + text + b" " + str(n % 7).encode() + b"\n")
    ann = tmp_path / "webvid.csv"
    ann.write_bytes(b"".join(lines))
    cfg = PreprocessConfig(workers=1, shard_samples=2)
    small = build_manifest(ann, videos, tmp_path / "memory.parquet", cfg=cfg)
    large = build_manifest(ann, videos, tmp_path / "dask.parquet", cfg=cfg, in_memory_max_rows=0)
    a, b = pq.read_table(small), pq.read_table(large)
    assert a.num_rows > 5 and a.schema == b.schema
    assert a.to_pylist() == b.to_pylist()
    assert pq.ParquetFile(small).num_row_groups == pq.ParquetFile(large).num_row_groups
