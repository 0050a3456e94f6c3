"""The pre-training program end to end on real tiny shards: outputs, cost JSON, resume."""

from __future__ import annotations

import json

import pytest

from pipeline.config import ConfigError
from train import pretrain
from train.checkpoint import load_model, read_state


def test_pretrain_writes_checkpoint_metrics_and_cost(tmp_path, params_file, overrides):
    argv = ["--recipe", "smaug", "--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=3",
                           "pretrain.cost.preset=smaug")]
    assert pretrain.main(argv) == 0

    run_dir = tmp_path / "models" / "smaug"
    state = read_state(run_dir)
    assert state["step"] == 3 and state["finished"] is True and state["recipe"] == "smaug"
    model, state = load_model(run_dir)
    assert model.cfg.video.width == 32

    cost = json.loads((tmp_path / "results" / "metrics" / "pretrain-smaug.json").read_text())
    for key in ("flops_per_clip", "flops_per_step", "clips_per_s", "wall_s", "peak_memory_bytes",
                "data_wait_frac", "tokens", "projected_gpu_hours", "projection"):
        assert key in cost, key
    assert cost["flops_per_step"] == pytest.approx(cost["flops_per_clip"] * 4)
    assert cost["flops_per_clip"] > 0 and cost["clips_per_s"] > 0
    assert 0 <= cost["data_wait_frac"] < 1
    # Masking keeps a quarter of the 2x4x4 patches; sparsification keeps fewer still.
    tokens = cost["tokens"]
    assert tokens["video_tokens_input"] == 32
    assert tokens["video_tokens_visible"] == 8
    assert tokens["video_tokens_final"] < tokens["video_tokens_visible"]
    proj = cost["projection"]
    assert proj["assumptions"]["mfu"] == 0.35 and proj["assumptions"]["clips"] == 5_500_000
    expected = proj["flops_per_clip"] * 5_500_000 * 10 / (154.8e12 * 0.35) / 3600
    assert cost["projected_gpu_hours"] == pytest.approx(expected)

    live = json.loads((tmp_path / "results" / "dvclive" / "pretrain-smaug" / "metrics.json").read_text())
    assert "train" in live and "perf" in live and "data_wait_frac" in live["perf"]
    assert live["step"] == 3 and live["clips_per_s"] == cost["clips_per_s"]
    png = tmp_path / "plots" / "sparsification.png"
    assert pretrain.main(argv + ["--plot-only", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    curve = tmp_path / "results" / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    assert len(curve.read_text().strip().splitlines()) == 1 + 3  # header + one row per step


def test_mismatched_frames_rejected_with_name(tmp_path, params_file, overrides):
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("loader.num_frames=4")]
    with pytest.raises(ConfigError, match="model.video.num_frames"):
        pretrain.main(argv)


def test_bad_pretrain_value_rejected_with_name(tmp_path, params_file, overrides):
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("pretrain.lr=-1")]
    with pytest.raises(ConfigError, match=r"^pretrain\.lr: must be > 0"):
        pretrain.main(argv)
    argv[-1] = "pretrain.cost.mfu=2"
    with pytest.raises(ConfigError, match=r"^pretrain\.cost\.mfu"):
        pretrain.main(argv)
    argv[-1] = "pretrain.precision=fp16"
    with pytest.raises(ConfigError, match=r"^pretrain\.precision"):
        pretrain.main(argv)


def test_bench_writes_speedup_and_flops_ratio(tmp_path, params_file, overrides):
    from train import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--params", str(params_file), "--steps", "2", "--warmup", "0",
                       "--out", str(out), *overrides()]) == 0
    result = json.loads(out.read_text())
    for key in ("speedup", "flops_ratio", "smaug", "dense"):
        assert key in result
    assert result["speedup"] == pytest.approx(result["smaug"]["clips_per_s"] / result["dense"]["clips_per_s"])
    assert result["flops_ratio"] == pytest.approx(result["dense"]["flops_per_clip"] / result["smaug"]["flops_per_clip"])
    # dense encodes every video token and has no masking: more FLOPs per clip
    assert result["flops_ratio"] > 1
    assert len(result["smaug"]["step_s"]) == len(result["dense"]["step_s"]) == 2


def test_equal_time_steps_scale_by_the_benchmarked_throughput():
    bench = {"candidate": "smaug", "smaug": {"clips_per_s": 15.0}, "dense": {"clips_per_s": 5.0}}
    assert pretrain.equal_time_steps(bench, "dense", 240, 24) == (80, 8)
    assert pretrain.equal_time_steps(bench, "smaug", 240, 24) == (240, 24)
    # a tiny budget still trains one step, and warm-up stays shorter than the run
    assert pretrain.equal_time_steps(bench, "dense", 2, 1) == (1, 0)
    with pytest.raises(ConfigError, match="--equal-time: the benchmark has no clips_per_s for 'mac'"):
        pretrain.equal_time_steps(bench, "mac", 240, 24)


def test_equal_time_from_two_runs_metrics(tmp_path):
    smaug, dense = tmp_path / "pretrain-smaug.json", tmp_path / "pretrain-dense.json"
    smaug.write_text(json.dumps({"recipe": "smaug", "clips_per_s": 17.0}))
    dense.write_text(json.dumps({"recipe": "dense", "clips_per_s": 8.5}))
    bench = pretrain.throughputs([str(smaug), str(dense)], "dense")
    assert pretrain.equal_time_steps(bench, "dense", 240, 24) == (120, 12)
    with pytest.raises(ConfigError, match="is a 'smaug' run, not 'dense'"):
        pretrain.throughputs([str(dense), str(smaug)], "dense")


def test_equal_time_run_gets_its_own_name_and_the_scaled_steps(tmp_path, params_file, overrides):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"candidate": "smaug", "smaug": {"clips_per_s": 12.0},
                                 "dense": {"clips_per_s": 4.0}}))
    argv = ["--recipe", "dense", "--params", str(params_file), "--no-progress", "--run-name", "dense-equal-time",
            *overrides("pretrain.steps=6", "pretrain.warmup=3", "pretrain.cost.preset=dense"),
            "--equal-time", str(bench)]
    assert pretrain.main(argv) == 0
    state = read_state(tmp_path / "models" / "dense-equal-time")
    assert state["step"] == 2 and state["recipe"] == "dense" and state["run_name"] == "dense-equal-time"
    assert state["equal_time"]["of"] == "smaug" and state["equal_time"]["candidate_steps"] == 6
    cost = json.loads((tmp_path / "results" / "metrics" / "pretrain-dense-equal-time.json").read_text())
    assert cost["steps"] == 2 and cost["recipe"] == "dense" and cost["equal_time"]["steps"] == 2
    assert not (tmp_path / "models" / "dense").exists()
