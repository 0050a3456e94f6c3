"""The pre-training program end to end on real tiny shards: outputs, cost JSON, resume."""

from __future__ import annotations

import json

import pytest

from pipeline.config import ConfigError
from train import pretrain
from train.checkpoint import load_model, read_state


def test_pretrain_writes_checkpoint_metrics_and_cost(tmp_path, params_file, overrides):
    argv = ["--recipe", "smaug", "--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=3")]
    assert pretrain.main(argv) == 0

    run_dir = tmp_path / "models" / "smaug"
    state = read_state(run_dir)
    assert state["step"] == 3 and state["finished"] is True and state["recipe"] == "smaug"
    model, state = load_model(run_dir)
    assert model.cfg.video.width == 32

    cost = json.loads((tmp_path / "results" / "metrics" / "pretrain-smaug.json").read_text())
    for key in ("flops_per_clip", "flops_per_step", "clips_per_s", "wall_s", "peak_memory_bytes",
                "data_wait_frac", "tokens"):
        assert key in cost, key
    assert cost["flops_per_step"] == pytest.approx(cost["flops_per_clip"] * 4)
    assert cost["flops_per_clip"] > 0 and cost["clips_per_s"] > 0
    assert 0 <= cost["data_wait_frac"] < 1
    # Masking keeps a quarter of the 2x4x4 patches; sparsification keeps fewer still.
    tokens = cost["tokens"]
    assert tokens["video_tokens_input"] == 32
    assert tokens["video_tokens_visible"] == 8
    assert tokens["video_tokens_final"] < tokens["video_tokens_visible"]
    assert "projection" not in cost  # the bench stage reports it: its assumptions retrain nothing
    # each objective's final loss (the tables compare VTM's with its prior) and the params hash
    assert set(cost["final_losses"]) == {"vtc", "vtm", "mlm", "mvm", "window_steps"}
    from pipeline.provenance import check

    check(cost, "pretrain-smaug.json", params_file)  # the params and overrides that made it

    live = json.loads((tmp_path / "results" / "dvclive" / "pretrain-smaug" / "metrics.json").read_text())
    assert "train" in live and "perf" in live and "data_wait_frac" in live["perf"]
    assert live["step"] == 3 and live["clips_per_s"] == cost["clips_per_s"]
    png = tmp_path / "plots" / "sparsification.png"
    assert pretrain.main(argv + ["--plot-only", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    curve = tmp_path / "results" / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    assert len(curve.read_text().strip().splitlines()) == 1 + 3  # header + one row per step


def test_mismatched_frames_rejected_with_name(tmp_path, params_file, overrides, capsys):
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("loader.num_frames=4")]
    assert pretrain.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: model.video.num_frames")


@pytest.mark.parametrize("override, message", [
    ("pretrain.lr=-1", "error: pretrain.lr: must be > 0"),
    ("pretrain.precision=fp8", "error: pretrain.precision"),
    ("pretrain.cost.mfu=0.5", "error: pretrain.cost: unknown key (in override pretrain.cost.mfu=0.5)"),
    ("pretrian.steps=3", "error: pretrian: unknown section (in override pretrian.steps=3); did you mean pretrain?"),
])
def test_bad_pretrain_value_rejected_with_name(tmp_path, params_file, overrides, capsys, override, message):
    argv = ["--params", str(params_file), "--no-progress", *overrides(override)]
    assert pretrain.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1  # one line, no traceback


def test_a_run_resumes_only_on_its_own_settings_and_data(tmp_path, params_file, overrides, capsys,
                                                          pretrain_shards):
    import shutil

    argv = ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=2", "pretrain.warmup=1")]
    assert pretrain.main(argv) == 0
    first = (tmp_path / "models" / "smaug" / "model.safetensors").read_bytes()
    capsys.readouterr()
    # the same command: finished, nothing to do
    assert pretrain.main(argv) == 0
    # other shards: refused, naming them, and the finished run is untouched
    other = tmp_path / "other_shards"
    shutil.copytree(pretrain_shards, other)
    victim = sorted(other.glob("*.tar"))[0]
    victim.write_bytes(victim.read_bytes()[:-512])
    assert pretrain.main(argv + [f"pretrain.shards={other}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "shards differ" in err and victim.name in err
    assert "--fresh" in err and "--run-name" in err
    # other settings: refused, naming the key and both values
    assert pretrain.main(argv + ["model.masking.video_ratio=0.5"]) == 2
    assert "model.masking.video_ratio: 0.75 -> 0.5" in capsys.readouterr().err
    assert (tmp_path / "models" / "smaug" / "model.safetensors").read_bytes() == first
    # a new run name trains beside it
    assert pretrain.main(argv + [f"pretrain.shards={other}", "--run-name", "mine"]) == 0
    assert (tmp_path / "models" / "mine" / "model.safetensors").exists()
    assert (tmp_path / "results" / "metrics" / "pretrain-mine.json").exists()
    assert (tmp_path / "models" / "smaug" / "model.safetensors").read_bytes() == first


def test_print_config_shows_params_recipe_and_overrides(tmp_path, params_file, overrides, capsys):
    import yaml

    argv = ["--params", str(params_file), "--recipe", "dense", *overrides("pretrain.steps=7"), "--print-config"]
    assert pretrain.main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["pretrain"]["steps"] == 7 and printed["model"]["masking"]["video_ratio"] == 0.0
    assert not (tmp_path / "models").exists()


def test_bench_writes_speedup_and_flops_ratio(tmp_path, params_file, overrides):
    from train import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--params", str(params_file), "--steps", "2", "--warmup", "0", "--grid", "",
                       "--out", str(out), *overrides("cost.preset=smaug", "cost.mfu=0.5")]) == 0
    result = json.loads(out.read_text())
    proj = result["projection"]
    for recipe in ("smaug", "dense"):
        p = proj[recipe]
        assert p["assumptions"]["mfu"] == 0.5 and p["assumptions"]["clips"] == 5_500_000
        assert p["gpu_hours"] == pytest.approx(p["flops_per_clip"] * 5_500_000 * 10 / (154.8e12 * 0.5) / 3600)
    assert proj["gpu_hours_ratio"] == pytest.approx(proj["dense"]["gpu_hours"] / proj["smaug"]["gpu_hours"])
    assert proj["gpu_hours_ratio"] > 1
    for key in ("speedup", "flops_ratio", "smaug", "dense"):
        assert key in result
    assert result["speedup"] == pytest.approx(result["smaug"]["clips_per_s"] / result["dense"]["clips_per_s"])
    assert result["flops_ratio"] == pytest.approx(result["dense"]["flops_per_clip"] / result["smaug"]["flops_per_clip"])
    # dense encodes every video token and has no masking: more FLOPs per clip
    assert result["flops_ratio"] > 1
    assert len(result["smaug"]["step_s"]) == len(result["dense"]["step_s"]) == 2
    assert result["attention_counted"] is True and proj["attention_counted"] is True
    assert proj["preset"] == "smaug"
    assert proj["flops_ratio"] == pytest.approx(proj["dense"]["flops_per_clip"] / proj["smaug"]["flops_per_clip"])


def test_bench_grid_times_small_points_counts_big_ones_and_plots(tmp_path, params_file, overrides):
    from train import bench

    out, png = tmp_path / "bench.json", tmp_path / "speedup.png"
    # patch 8: 2x16 -> 8 tokens (timed), 4x32 -> 64 tokens (counted only: above the limit of 10)
    assert bench.main(["--params", str(params_file), "--steps", "1", "--warmup", "0", "--no-projection",
                       "--grid", "2x16,4x32", "--grid-steps", "1", "--grid-timed-max-tokens", "10",
                       "--out", str(out), "--plot", str(png), *overrides()]) == 0
    grid = json.loads(out.read_text())["grid"]
    small, big = grid["points"]
    assert (small["frames"], small["image_size"], small["tokens_per_clip"], small["timed"]) == (2, 16, 8, True)
    assert (big["tokens_per_clip"], big["timed"]) == (64, False) and "speedup" not in big
    assert "clips_per_s" not in big["smaug"] and big["smaug"]["flops_per_clip"] > small["smaug"]["flops_per_clip"]
    assert small["speedup"] == pytest.approx(small["smaug"]["clips_per_s"] / small["dense"]["clips_per_s"])
    for row in (small, big):
        assert row["flops_ratio"] == pytest.approx(row["dense"]["flops_per_clip"] / row["smaug"]["flops_per_clip"])
    assert big["flops_ratio"] > small["flops_ratio"]  # masking and sparsifying save more on more tokens
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("grid", ["8by96", "0x96", "8x"])
def test_bench_grid_bad_point_is_an_error_naming_it(grid, capsys):
    from train import bench

    with pytest.raises(SystemExit):
        bench.main(["--grid", grid])
    assert f"bad point {grid!r}" in capsys.readouterr().err


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
            *overrides("pretrain.steps=6", "pretrain.warmup=3"),
            "--equal-time", str(bench)]
    assert pretrain.main(argv) == 0
    state = read_state(tmp_path / "models" / "dense-equal-time")
    assert state["step"] == 2 and state["recipe"] == "dense" and state["run_name"] == "dense-equal-time"
    assert state["equal_time"]["of"] == "smaug" and state["equal_time"]["candidate_steps"] == 6
    cost = json.loads((tmp_path / "results" / "metrics" / "pretrain-dense-equal-time.json").read_text())
    assert cost["steps"] == 2 and cost["recipe"] == "dense" and cost["equal_time"]["steps"] == 2
    assert not (tmp_path / "models" / "dense").exists()
