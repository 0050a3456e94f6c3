"""Every recipe is a config overlay that builds and trains one step, with the effect it names."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.config import RECIPES_DIR, ConfigError, load_yaml, section
from train.pretrain import check_consistent

TRAINING_RECIPES = ["smaug", "dense", "mask-only", "mask-no-mvm", "sparsify-only", "simvtp", "mac", "singularity"]


def test_every_recipe_file_has_a_description():
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert set(TRAINING_RECIPES) | {"vit-b16"} <= set(names)
    for name in names:
        data = load_yaml(RECIPES_DIR / f"{name}.yaml")
        assert isinstance(data.get("description"), str) and data["description"], name


_batches: dict = {}


def batch_for(params, shards):
    from train.data import LoaderConfig, build_loader

    cfg = section(params, LoaderConfig, "loader")
    if cfg not in _batches:
        _batches[cfg] = next(iter(build_loader(cfg, str(shards), train=True, seed=0)))
    return _batches[cfg]


@pytest.mark.parametrize("recipe", TRAINING_RECIPES)
def test_recipe_builds_and_takes_a_step(recipe, tiny_params, build_tiny, pretrain_shards):
    from train.model import ModelConfig
    from train.data import LoaderConfig
    from train.trainer import Trainer

    # the tiny overrides set 2 frames; the single-frame recipe keeps its one
    params = tiny_params(recipe, *(["model.video.num_frames=1"] if recipe == "singularity" else []))
    assert "description" not in params
    model_cfg = section(params, ModelConfig, "model")
    check_consistent(model_cfg, section(params, LoaderConfig, "loader"))
    model, cfg = build_tiny(params)
    trainer = Trainer(model, cfg, progress=False, seed=0)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    batch = batch_for(params, pretrain_shards)
    row = trainer.train_step([batch])
    assert math.isfinite(row["loss"]) and row["loss"] > 0
    after = [p for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))

    s = {k[len("stats_"):]: v for k, v in row.items() if k.startswith("stats_")}
    frames = model_cfg.video.num_frames
    assert s["video_tokens_input"] == frames * (32 // 8) ** 2
    losses = {k[len("loss_"):] for k in row if k.startswith("loss_")}
    expected = {n for n in ("vtc", "vtm", "mlm", "mvm") if getattr(model_cfg.objectives, n) > 0}
    assert losses == expected
    masked = s["video_tokens_visible"] < s["video_tokens_input"]
    sparsified = s["video_tokens_final"] < s["video_tokens_visible"]
    effects = {
        "smaug": (True, True), "dense": (False, False), "mask-only": (True, False), "mask-no-mvm": (True, True),
        "sparsify-only": (False, True), "simvtp": (True, False), "mac": (True, False),
        "singularity": (False, False),
    }
    assert (masked, sparsified) == effects[recipe]
    if recipe == "singularity":
        assert batch["video"].shape[1] == 1
    if recipe == "simvtp":
        assert s["video_tokens_visible"] <= 0.1 * s["video_tokens_input"] + 1


def test_vit_b16_preset_is_paper_scale():
    from pipeline.config import deep_merge, load_params, load_recipe
    from train.model import ModelConfig

    params = deep_merge(load_params(), load_recipe("vit-b16"))
    cfg = section(params, ModelConfig, "model").video
    assert (cfg.image_size, cfg.patch_size, cfg.width, cfg.depth, cfg.heads) == (224, 16, 768, 12, 12)


def test_unknown_recipe_named():
    from pipeline.config import load_params

    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        load_params(recipe="nope")
