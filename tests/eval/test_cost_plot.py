"""The cost-against-accuracy plot of the tables stage, and the committed tables' shape."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from eval.config import TablesConfig
from eval.cost_plot import plot_cost_vs_accuracy, run_points
from pipeline.config import load_params, section
from pipeline.provenance import EVAL_KEYS, PRETRAIN_KEYS, ProvenanceError, stamp
from tests.support import params_dict

REPO = Path(__file__).resolve().parents[2]


def write_run(metrics: Path, evals: Path, params_path: Path, run: str, wall_s: float, r1: float, seed: int = 0):
    overrides = [f"pretrain.seed={seed}"] if seed else []
    params = load_params(params_path, overrides=overrides)
    metrics.mkdir(parents=True, exist_ok=True)
    evals.mkdir(parents=True, exist_ok=True)
    (metrics / f"pretrain-{run}.json").write_text(json.dumps({
        "recipe": run.split("-seed")[0], "train_wall_s": wall_s, "device": "cpu", "threads": 2, "world_size": 1,
        "params_provenance": stamp(params, PRETRAIN_KEYS, overrides=overrides)}))
    (evals / f"{run}.json").write_text(json.dumps({
        "recipe": run, "zero_shot": {"retrieval": {"normal": {"vtc": {"t2v": {"R@1": r1}}}}},
        "params_provenance": stamp(params, EVAL_KEYS)}))


def test_cost_plot_one_point_per_run_and_seed(tmp_path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params_dict()))
    base = tmp_path / "results"
    cfg = section(load_params(params_path, overrides=[
        f"tables.metrics_dir={base / 'metrics'}", f"tables.eval_dir={base / 'eval'}",
        f"tables.ablation_dir={base / 'ablation'}", f"tables.cost_plot={base / 'plots/cost.png'}",
        "tables.runs=null"]), TablesConfig, "tables")
    write_run(base / "metrics", base / "eval", params_path, "smaug", 360.0, 7.8)
    write_run(base / "metrics", base / "eval", params_path, "dense", 800.0, 7.6)
    for seed, r1 in ((1, 9.0), (2, 6.6)):  # the ablation's extra seeds of smaug
        write_run(base / "ablation/metrics", base / "ablation/eval", params_path, f"smaug-seed{seed}", 350.0, r1, seed)
    points = run_points(cfg, params_path)
    assert sorted((p["run"], p["setting"]) for p in points) == [
        ("dense", "dense"), ("smaug", "smaug"), ("smaug-seed1", "smaug"), ("smaug-seed2", "smaug")]
    assert next(p for p in points if p["run"] == "dense")["hours"] == pytest.approx(800 * 2 / 3600)
    # tables.runs keeps a run of the default folders that the stage does not name off the plot;
    # the ablation folder's runs stay, and without tables.ablation_dir they go too
    named = run_points(replace(cfg, runs=["smaug"]), params_path)
    assert sorted(p["run"] for p in named) == ["smaug", "smaug-seed1", "smaug-seed2"]
    assert [p["run"] for p in run_points(replace(cfg, runs=["smaug"], ablation_dir=None), params_path)] == ["smaug"]
    out = plot_cost_vs_accuracy(cfg, params_path)
    from PIL import Image

    pixels = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    assert pixels.var() > 100
    again = out.read_bytes()
    plot_cost_vs_accuracy(cfg, params_path)
    assert out.read_bytes() == again  # no timestamp in the file
    # an input the current params did not make is refused, naming it
    other = tmp_path / "other.yaml"
    changed = params_dict()
    changed["pretrain"]["steps"] = 7
    other.write_text(yaml.safe_dump(changed))
    with pytest.raises(ProvenanceError, match="pretrain-dense.json: made by other params"):
        run_points(cfg, other)


def test_committed_tables_hold_no_params_json():
    tables = sorted((REPO / "results/tables").glob("*.md"))
    assert tables, "no committed tables"
    for md in tables:
        text = md.read_text()
        assert '"finetune": {' not in text and '"eval": {' not in text, md.name
        if md.name != "provenance.md":
            assert "Provenance: " in text, md.name
    assert json.loads((REPO / "results/tables/provenance.json").read_text())["runs"]
    assert (REPO / "results/plots/cost_vs_accuracy.png").exists()
