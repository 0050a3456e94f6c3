"""The one-run speed benchmark of the ablation recipes (train/ablation_bench.py) on real tiny shards."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from train import ablation_bench


def test_every_recipe_is_timed_in_one_run_with_ratios_to_the_baseline(tmp_path, params_file, overrides):
    out = tmp_path / "speed.json"
    assert ablation_bench.main(["--params", str(params_file), "--recipes", "smaug,dense,mac", "--steps", "3",
                                "--warmup", "1", "--out", str(out), *overrides()]) == 0
    result = json.loads(out.read_text())
    recipes = result["recipes"]
    assert set(recipes) == {"smaug", "dense", "mac"} and result["baseline"] == "dense"
    for name, r in recipes.items():
        assert len(r["step_s"]) == 3 and all(s > 0 for s in r["step_s"]), name
        assert r["clips_per_s"] == pytest.approx(r["batch_size"] * 3 / sum(r["step_s"]))
        assert r["clips_per_s_vs_baseline"] == pytest.approx(r["clips_per_s"] / recipes["dense"]["clips_per_s"])
    assert recipes["dense"]["clips_per_s_vs_baseline"] == pytest.approx(1.0)
    # dense encodes every video token; smaug masks and sparsifies: fewer FLOPs
    assert recipes["dense"]["flops_per_clip"] > recipes["smaug"]["flops_per_clip"]
    from pipeline.provenance import check

    check(result, out, params_file)


def test_each_recipe_runs_in_every_place_of_a_round():
    names = ["a", "b", "c"]
    rounds = [ablation_bench.round_order(names, i) for i in range(6)]
    assert all(sorted(r) == names for r in rounds)
    for place in range(3):  # over 6 rounds each recipe is timed once in each place, twice over
        assert Counter(r[place] for r in rounds) == Counter({"a": 2, "b": 2, "c": 2})


@pytest.mark.parametrize("argv, message", [
    (["--recipes", "smaug,smaug,dense"], "--recipes: 'smaug' is named twice"),
    (["--recipes", "smaug,mac"], "--baseline 'dense' must be one of --recipes"),
    (["--recipes", ","], "--recipes: name at least one recipe"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_bad_arguments_are_refused_naming_them(argv, message, capsys):
    with pytest.raises(SystemExit):
        ablation_bench.main(argv)
    assert message in capsys.readouterr().err


def test_an_unknown_recipe_is_one_error_line_before_any_timing(tmp_path, params_file, overrides, capsys):
    out = tmp_path / "speed.json"
    assert ablation_bench.main(["--params", str(params_file), "--recipes", "dense,smaugg", "--out", str(out),
                                *overrides()]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "smaugg" in err
    assert not out.exists()
