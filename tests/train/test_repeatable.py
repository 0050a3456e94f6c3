"""Repeatable training (train/repeatable.py): one seed on 2 threads gives the same bits twice."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.conftest import run_overrides
from train import finetune, pretrain


@pytest.fixture(autouse=True)
def _torch_default_afterwards():
    """The setting is process-wide: later tests get torch's default back."""
    yield
    torch.use_deterministic_algorithms(False)


def metrics_of(tmp_path, params_file, argv_settings: list[str], name: str) -> dict:
    argv = ["--params", str(params_file), "--no-progress", "--run-name", name, *argv_settings]
    assert pretrain.main(argv) == 0
    return json.loads((tmp_path / "results" / "metrics" / f"pretrain-{name}.json").read_text())


def test_two_runs_of_one_seed_on_two_threads_are_identical(tmp_path, params_file, pretrain_shards):
    """The default model (the tiny one's kernels are too small to be split between threads):
    without the setting, these two runs' losses differed in the 7th digit (2 of 2 tries)."""
    outputs = [o for o in run_overrides(tmp_path, pretrain_shards)
               if o.startswith(("pretrain.shards=", "pretrain.out_dir=", "pretrain.results_dir="))]
    settings = [*outputs, "pretrain.steps=8", "pretrain.warmup=1", "pretrain.ckpt_every=0", "pretrain.threads=2",
                "loader.batch_size=8", "loader.num_workers=1"]
    first = metrics_of(tmp_path, params_file, settings, "first")
    second = metrics_of(tmp_path, params_file, settings, "second")
    assert first["deterministic"] is True and first["threads"] == 2
    assert first["final_losses"] == second["final_losses"]  # exact, every objective
    assert first["final_loss"] == second["final_loss"]


def test_the_setting_reaches_torch(tmp_path, params_file, overrides):
    off = metrics_of(tmp_path, params_file, overrides("pretrain.steps=2", "deterministic=false"), "off")
    assert off["deterministic"] is False and not torch.are_deterministic_algorithms_enabled()
    on = metrics_of(tmp_path, params_file, overrides("pretrain.steps=2"), "on")
    assert on["deterministic"] is True and torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("program, argv", [
    (pretrain.main, ["--print-config"]),
    (pretrain.main, []),
    (finetune.main, ["--task", "retrieval", "--print-config"]),
    (finetune.main, ["--task", "retrieval"]),
])
def test_a_value_other_than_true_or_false_is_refused(tmp_path, params_file, overrides, capsys, program, argv):
    settings = overrides("deterministic=3") if program is pretrain.main else ["deterministic=3"]
    assert program(["--params", str(params_file), *argv, *settings]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: deterministic: expected true or false, got 3") and err.count("\n") == 1
    assert not (tmp_path / "models").exists()  # refused before anything is written
