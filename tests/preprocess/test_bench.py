"""preprocess.bench on two tiny generated clips: the JSON's schema and accounting, not its timings."""

import json

import pytest

from preprocess import bench


def test_bench_reports_the_floor_and_the_cli_run_with_every_row(tmp_path):
    out = tmp_path / "preprocess.json"
    # 8-9 s clips, 4 s windows: each video is cut in one ffmpeg pass into 2 windows
    assert bench.main(["--generate", "--clips", "2", "--repeats", "1", "--workers", "1", "--out", str(out),
                       "preprocess.max_window_s=4.0", "preprocess.short_side=64"]) == 0
    r = json.loads(out.read_text())
    assert r["videos_transcoded"] == 2 and r["samples_ok"] == 2 and r["stats_rows"] == r["cli_stats_rows"] == 2
    assert r["windows_written"] >= 4  # every row accounted for, every window written
    assert set(r["seconds"]) == {"baseline_all", "preprocess_all", "preprocess_one", "baseline_one", "cli_all"}
    assert all(len(v) == 1 and v[0] > 0 for v in r["seconds"].values())
    floor = r["per_video_floor"]
    assert floor["videos_per_s"] == pytest.approx(r["videos_per_s"]["baseline_one"], abs=0.01)
    assert floor["preprocess_one_vs_floor"] > 0
    assert r["cli_all_vs_ffmpeg_all"] > 0 and set(r["within_10pct_of_floor"]) == {"one_core", "cli_all_cores"}
