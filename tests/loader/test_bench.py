import json

from train.data import bench
from train.data.config import LoaderConfig


def test_bench_writes_ratios_against_the_naive_baseline(h264_shards, tmp_path):
    out = tmp_path / "loader.json"
    params = tmp_path / "params.yaml"
    params.write_text("loader:\n  batch_size: 4\n  shuffle_buffer: 4\n")
    bench.main(["--shards", str(h264_shards.folder), "--out", str(out), "--clips", "4", "--batches", "2",
                "--params", str(params)])
    report = json.loads(out.read_text())
    per_clip = report["per_clip_decode"]
    assert per_clip["naive"]["frames_converted"] > per_clip["seek"]["frames_converted"] == 4 * LoaderConfig().num_frames
    assert per_clip["seek_speedup_vs_naive"] > 0
    backends = report["backends"]
    assert backends["cpu_naive_decode_all"]["speedup_vs_naive_loader"] == 1.0
    assert backends["cpu"]["clips"] == 2 * 4 and backends["cpu"]["frames_per_s"] > 0
    assert backends["dali"]["available"] is False and "GPU" in backends["dali"]["reason"]
    assert report["auto_backend"]["backend"] == "cpu"
