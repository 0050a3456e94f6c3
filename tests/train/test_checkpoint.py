"""Checkpoints: safetensors + weights_only round trip, unsafe files refused, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch

from train import checkpoint as ckpt
from train.trainer import Trainer


class NotATensor:
    """Any class: unpickling it would run arbitrary code paths."""

    def __init__(self):
        self.payload = "x"


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path, tiny_params, build_tiny, real_batches):
    params = tiny_params("smaug")
    model, cfg = build_tiny(params)
    trainer = Trainer(model, cfg, progress=False, seed=0)
    trainer.fit(iter(real_batches[:2]), steps=2)
    folder = tmp_path / "ckpt"
    torch.manual_seed(123)
    trainer.extra_state = lambda: {"data": {"epoch": 1, "batch": 7}}
    trainer.save(folder, recipe="smaug", model_config=params["model"])
    expected_draw = torch.rand(3)

    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optim.pt", "state.json"]
    assert not list(tmp_path.glob(".ckpt.*"))  # no temp folders left behind
    # optim.pt loads with weights_only=True (tensors and plain containers only)
    raw = torch.load(folder / "optim.pt", weights_only=True)
    assert raw["step"] == 2 and raw["extra"]["data"] == {"epoch": 1, "batch": 7}

    other, _ = build_tiny(tiny_params("smaug", "seed=5"))
    torch.manual_seed(999)
    with torch.no_grad():  # make sure the weights really come from the file
        for p in other.parameters():
            p.add_(1.0)
    resumed = Trainer(other, cfg, progress=False, seed=0)
    assert resumed.resume(folder) == 2
    assert torch.equal(torch.rand(3), expected_draw)  # RNG state restored
    for (n, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), n
    s1, s2 = trainer.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])


def test_load_model_rebuilds_from_folder(tmp_path, tiny_params, build_tiny):
    from pipeline.config import section, to_dict
    from train.model import ModelConfig

    params = tiny_params("dense")
    model, _ = build_tiny(params)
    cfg = section(params, ModelConfig, "model")
    ckpt.save_checkpoint(tmp_path / "run", model, step=5,
                         state={"recipe": "dense", "model_config": to_dict(cfg)})
    loaded, state = ckpt.load_model(tmp_path / "run")
    assert state["step"] == 5 and state["recipe"] == "dense"
    assert loaded.cfg == cfg and not loaded.training
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n


def test_pickle_bearing_file_is_refused(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    folder = ckpt.save_checkpoint(tmp_path / "run", model, step=1)
    torch.save({"step": 1, "optimizer": None, "schedule": None, "rng": {}, "extra": NotATensor()},
               folder / "optim.pt")
    with pytest.raises(ckpt.CheckpointError, match="refused to load"):
        ckpt.load_training_state(folder)
    with pytest.raises(ckpt.CheckpointError, match="refused to load"):
        ckpt.resume(folder, model)


def test_missing_or_broken_files_named(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint folder"):
        ckpt.read_state(tmp_path / "nothing")
    folder = ckpt.save_checkpoint(tmp_path / "run", model, step=1)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ckpt.CheckpointError, match="missing model.safetensors"):
        ckpt.load_weights(model, folder)
    with pytest.raises(ckpt.CheckpointError, match="no model_config"):
        ckpt.load_model(folder)


def test_rewrite_replaces_atomically(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    folder = tmp_path / "run"
    ckpt.save_checkpoint(folder, model, step=1)
    ckpt.save_checkpoint(folder, model, step=2)
    assert json.loads((folder / "state.json").read_text())["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
