"""Probing with both backends, the transcode cache, windows, and shards split by bytes."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.api import build_manifest, finalize, plan_shards, process_shards
from preprocess.config import PreprocessConfig
from preprocess.normalise import output_size, plan_windows, transcode_args
from preprocess.probe import BadVideo, probe_source


@pytest.mark.parametrize("backend", ["pyav", "ffprobe"])
def test_probe_backends_agree_on_facts_and_reasons(media, backend):
    cfg = PreprocessConfig(probe=backend)
    facts = probe_source(media["good"]["rotated"], cfg)
    assert (facts["codec"], facts["width"], facts["height"], facts["rotation"]) == ("h264", 160, 120, 90)
    assert probe_source(media["good"]["hevc"], cfg)["container"] == "matroska"
    assert probe_source(media["good"]["vfr"], cfg)["variable_frame_rate"] is True
    for stem, path in media["bad"].items():
        if stem == "nodecode" and backend == "ffprobe":
            continue  # ffprobe does not decode: the transcode reports it (end-to-end test)
        with pytest.raises(BadVideo) as err:
            probe_source(path, cfg)
        assert str(err.value).startswith(media["bad_expect"][stem]), (stem, str(err.value))


def test_windows_and_sizes():
    cfg = PreprocessConfig(max_window_s=10.0, min_duration_s=1.0)
    assert plan_windows(9.99, cfg) == [None]
    assert plan_windows(25.0, cfg) == [(0.0, 10.0), (10.0, 10.0), (20.0, 5.0)]
    assert plan_windows(20.5, cfg) == [(0.0, 10.0), (10.0, 10.0)]  # a 0.5 s tail is dropped
    probe = {"width": 1920, "height": 1080, "rotation": 0, "sample_aspect_ratio": 1.0}
    assert output_size(probe, cfg) == (228, 128)
    assert output_size(dict(probe, rotation=270), cfg) == (128, 228)
    assert output_size(dict(probe, width=1440, sample_aspect_ratio=4 / 3), cfg) == (228, 128)
    args = transcode_args(Path("in put é.mp4"), Path("o.mp4"), probe, (10.0, 5.0), cfg)
    assert "in put é.mp4" in args  # one argument, never a shell string
    for flag, value in [("-g", "10"), ("-keyint_min", "10"), ("-sc_threshold", "0"), ("-bf", "0"),
                        ("-threads", "1"), ("-pix_fmt", "yuv420p"), ("-ss", "10.000"), ("-t", "5.000")]:
        assert args[args.index(flag) + 1] == value


def test_cache_reuses_transcodes_and_big_shards_split(media, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for stem in ("h264", "vp9", "mpeg4"):
        src = media["good"][stem]
        (videos / src.name).write_bytes(src.read_bytes())
    ann = tmp_path / "MSR_VTT.json"
    ann.write_text(json.dumps({"annotations": [{"image_id": s, "caption": f"c {s}"} for s in ("h264", "vp9", "mpeg4")]}))
    cfg = PreprocessConfig(cache_dir=str(tmp_path / "cache"), shard_bytes=4096, workers=2)

    def run(out: Path) -> None:
        build_manifest(ann, videos, out / "manifest.parquet", cfg=cfg)
        process_shards(out, plan_shards(out, cfg), cfg, progress=False)
        finalize(out)

    run(tmp_path / "a")
    entries = sorted((tmp_path / "cache").glob("*/*/v.mp4"))
    assert len(entries) == 3
    stamps = [p.stat().st_mtime_ns for p in entries]
    run(tmp_path / "b")
    assert [p.stat().st_mtime_ns for p in entries] == stamps  # nothing transcoded again
    tars = sorted(p.name for p in (tmp_path / "a").glob("shard-*.tar"))
    assert tars == ["shard-000000-p1.tar", "shard-000000-p2.tar", "shard-000000.tar"]
    for name in tars:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        with tarfile.open(tmp_path / "a" / name) as tar:
            assert len(tar.getnames()) == 2  # one sample each: 4 KiB holds no two
    stats = pq.read_table(tmp_path / "a" / "stats.parquet").to_pylist()
    assert sorted(r["shard"] for r in stats) == sorted(tars)


def test_cli_rejects_bad_settings(tmp_path, repo):
    proc = subprocess.run(["python", "-m", "preprocess", "--out", str(tmp_path), "--stage", "shard",
                           "preprocess.keyint=0"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 2 and "preprocess.keyint: must be >= 1" in proc.stderr


def test_distributed_client_path_writes_the_same_shards(media, tmp_path):
    from distributed import Client, LocalCluster

    videos = tmp_path / "videos"
    videos.mkdir()
    for stem in ("h264", "anim"):
        (videos / media["good"][stem].name).write_bytes(media["good"][stem].read_bytes())
    ann = tmp_path / "clips.jsonl"
    ann.write_text('{"clip_name": "h264", "caption": "a"}\n{"clip_name": "anim", "caption": "b"}\n')
    cfg = PreprocessConfig(cache_dir=None, shard_samples=1, workers=2)
    outs = {}
    for mode in ("threads", "client"):
        out = tmp_path / mode
        build_manifest(ann, videos, out, cfg=cfg)
        if mode == "client":
            with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
                    Client(cluster) as client:
                process_shards(out, plan_shards(out, cfg), cfg, client=client, progress=False)
        else:
            process_shards(out, plan_shards(out, cfg), cfg, progress=False)
        assert finalize(out)["ok"] == 2
        outs[mode] = {p.name: p.read_bytes() for p in out.glob("shard-*.tar")}
    assert len(outs["threads"]) == 2 and outs["threads"] == outs["client"]


def test_one_pass_windows_match_separate_transcodes(media, tmp_path):
    """The segment muxer's windows: whole closed-GOP mp4s starting at a keyframe and at time 0,
    with the frames a separate -ss/-t transcode of each window gives."""
    import av
    import numpy as np

    from preprocess.normalise import transcode, transcode_windows

    cfg = PreprocessConfig(max_window_s=1.4, min_duration_s=0.5, keyint=10)
    src = media["good"]["long"]
    probe = probe_source(src, cfg)
    windows = plan_windows(probe["duration"], cfg)
    assert len(windows) >= 2
    written = transcode_windows(src, tmp_path, "long", probe, windows, cfg)
    assert [p.name for p, _ in written] == [f"long_w{i:03d}.mp4" for i in range(len(windows))]
    for i, ((path, facts), window) in enumerate(zip(written, windows)):
        alone = transcode(src, tmp_path / f"alone_{i}.mp4", probe, window, cfg)
        assert facts["num_frames"] == alone["num_frames"] == round(window[1] * cfg.target_fps)
        with av.open(str(path)) as seg:
            packets = [p for p in seg.demux(video=0) if p.size]
            assert packets[0].is_keyframe and packets[0].pts == 0  # each window starts cleanly
            assert [n for n, p in enumerate(packets) if p.is_keyframe][:2] == [0, 10]  # GOPs of keyint
        with av.open(str(path)) as seg, av.open(str(tmp_path / f"alone_{i}.mp4")) as one:
            a = next(seg.decode(video=0)).to_ndarray(format="rgb24").astype(int)
            b = next(one.decode(video=0)).to_ndarray(format="rgb24").astype(int)
            assert np.abs(a - b).mean() < 3  # the same first frame (both lossy encodes of it)


def test_one_pass_windows_fail_the_video_when_the_source_ends_early(media, tmp_path):
    from preprocess.normalise import transcode_windows

    cfg = PreprocessConfig(max_window_s=1.4, min_duration_s=0.5)
    src = media["good"]["long"]
    probe = dict(probe_source(src, cfg), duration=30.0)  # the container claims more than there is
    with pytest.raises(BadVideo, match="truncated or corrupt video"):
        transcode_windows(src, tmp_path, "long", probe, plan_windows(30.0, cfg), cfg)
