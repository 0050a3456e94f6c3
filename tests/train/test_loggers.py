"""Training curves beyond DVCLive (train/loggers.py): TensorBoard event files read back after a
tiny real pre-training run, and a clear error for a Weights & Biases project without wandb."""

from __future__ import annotations

import csv
import importlib.util

import pytest

from train import pretrain


def tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_dvclive_curve(tmp_path, params_file, overrides):
    argv = ["--recipe", "smaug", "--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=3", "log.tensorboard=true")]
    assert pretrain.main(argv) == 0
    events = tmp_path / "results" / "tensorboard" / "pretrain-smaug"
    assert list(events.glob("events.out.tfevents.*")), "no event file written"
    scalars = tensorboard_scalars(events)
    for tag in ("train/loss", "train/lr", "train/loss_vtc", "perf/clips_per_s"):
        assert tag in scalars, tag
    # the same rows DVCLive wrote for `dvc plots`, step for step
    tsv = tmp_path / "results" / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    rows = list(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))
    assert [s for s, _ in scalars["train/loss"]] == [int(r["step"]) for r in rows] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    assert scalars["summary/clips_per_s"][0][1] > 0


def test_wandb_without_the_package_is_a_clear_error(tmp_path, params_file, overrides, capsys):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here: the missing-package error cannot be shown")
    argv = ["--recipe", "smaug", "--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=2", "log.wandb=my-project")]
    assert pretrain.main(argv) == 2
    err = capsys.readouterr().err
    assert "log.wandb" in err and "my-project" in err and "pip install wandb" in err
    assert not (tmp_path / "models" / "smaug").exists()  # refused before any work
