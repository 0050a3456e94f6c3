import json

import pytest

from train.data import bench
from train.data.config import LoaderConfig


@pytest.fixture(scope="module")
def report(h264_shards, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loader_bench")
    out = tmp / "loader.json"
    params = tmp / "params.yaml"
    params.write_text("loader:\n  batch_size: 4\n  shuffle_buffer: 4\n")
    bench.main(["--shards", str(h264_shards.folder), "--out", str(out), "--clips", "4", "--batches", "2",
                "--rounds", "2", "--peers", "--long-clips", "1", "--long-seconds", "3", "--params", str(params)])
    return json.loads(out.read_text())


def test_bench_writes_ratios_against_the_naive_baseline(report):
    per_clip = report["per_clip_decode"]
    assert per_clip["frames_converted"]["naive"] > per_clip["frames_converted"]["seek"] == 4 * LoaderConfig().num_frames
    assert per_clip["seek_speedup_vs_naive"] > 0 and per_clip["rounds"] == 2
    decoders = per_clip["decoders"]
    assert {"naive", "seek", "seek_crop"} <= set(decoders) and decoders["naive"]["speedup_vs_naive"] == 1.0
    assert all(len(d["clips_per_s_rounds"]) == 2 and d["clips_per_s"] > 0 for d in decoders.values())
    # the naive decoder shows the same frames as ours: same conversion, bit for bit
    assert per_clip["pixels_vs_seek"]["naive"] == {"mean": 0.0, "max": 0}
    backends = report["backends"]
    assert backends["cpu_naive_decode_all"]["speedup_vs_naive_loader"] == 1.0
    assert backends["cpu"]["clips"] == 2 * 4 and backends["cpu"]["frames_per_s"] > 0
    assert backends["dali"]["available"] is False and "GPU" in backends["dali"]["reason"]
    assert report["auto_backend"]["backend"] == "cpu"


def test_bench_accounts_for_every_peer_and_the_long_clips(report):
    for section in ("per_clip_decode", "per_clip_decode_long"):
        per_clip = report[section]
        timed = set(per_clip["decoders"]) - {"naive", "seek", "seek_crop"}
        missing = set(per_clip["peers_unavailable"])
        # every peer is either timed (with a ratio and a pixel comparison) or says why not
        assert timed | missing == {"torchcodec_exact", "torchcodec_approximate", "decord"} and not timed & missing
        assert set(per_clip["seek_vs_peers"]) == timed and all(r > 0 for r in per_clip["seek_vs_peers"].values())
        assert all(reason for reason in per_clip["peers_unavailable"].values())
    long = report["per_clip_decode_long"]
    assert long["clip_example"]["num_frames"] == 30 and long["clips"] == 1
