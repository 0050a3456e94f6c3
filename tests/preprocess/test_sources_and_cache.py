"""Where inputs may come from and where the cache goes: links out of --videos are refused, the
transcode cache lives under --out, and an absurd frame size is called that."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.api import build_manifest, finalize, plan_shards, process_shards
from preprocess.config import PreprocessConfig
from preprocess.probe import BadVideo, probe_source


def run_api(ann: Path, videos: Path, out: Path, cfg: PreprocessConfig) -> dict[str, dict]:
    build_manifest(ann, videos, out, cfg=cfg)
    process_shards(out, plan_shards(out, cfg), cfg, progress=False)
    finalize(out)
    return {r["video_id"]: r for r in pq.read_table(out / "stats.parquet").to_pylist()}


def test_a_link_out_of_the_videos_folder_is_refused(media, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "secret.mp4"
    secret.write_bytes(media["good"]["h264"].read_bytes())
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "h264.mp4").write_bytes(media["good"]["h264"].read_bytes())
    (videos / "escape.mp4").symlink_to(secret)
    (videos / "inside.mp4").symlink_to("h264.mp4")  # a link that stays inside is fine
    ann = tmp_path / "clips.jsonl"
    ann.write_text("".join(json.dumps({"clip_name": v, "caption": f"c {v}"}) + "\n"
                           for v in ("h264", "escape", "inside")))
    stats = run_api(ann, videos, tmp_path / "out", PreprocessConfig(cache_dir=None, workers=1))
    assert stats["h264"]["status"] == "ok" and stats["inside"]["status"] == "ok"
    assert stats["escape"]["status"] == "failed"
    assert stats["escape"]["error"] == ("outside the videos folder: escape.mp4 is a link to a file outside "
                                        "--videos; refused")


def test_a_relative_cache_lives_under_out_not_the_current_folder(media, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "h264.mp4").write_bytes(media["good"]["h264"].read_bytes())
    ann = tmp_path / "clips.jsonl"
    ann.write_text(json.dumps({"clip_name": "h264", "caption": "c"}) + "\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    stats = run_api(ann, videos, out, PreprocessConfig(workers=1))  # the default cache_dir
    assert stats["h264"]["status"] == "ok"
    assert os.listdir(cwd) == []
    assert len(list((out / PreprocessConfig().cache_dir).glob("*/*/v.mp4"))) == 1


@pytest.mark.parametrize("backend", ["pyav", "ffprobe"])
def test_a_20000_px_frame_is_an_absurd_size(tmp_path, backend):
    big = tmp_path / "big.y4m"  # a header is enough: FFmpeg refuses the frame size itself
    big.write_bytes(b"YUV4MPEG2 W20000 H20000 F15:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    with pytest.raises(BadVideo, match=r"^absurd size: 20000x20000 is outside \[min_side 16, max_side 8192\]"):
        probe_source(big, PreprocessConfig(probe=backend))
