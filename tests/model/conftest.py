"""Tiny SMAUG configurations for the model tests (seconds on 2 cores)."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.config import deep_merge, section
from train.model import SMAUG, ModelConfig

TINY = {
    "video": {"image_size": 32, "patch_size": 8, "num_frames": 4, "width": 32, "depth": 3,
              "heads": 2, "mlp_ratio": 2.0},
    "text": {"num_layers": 2, "freeze_layers": 1, "max_len": 16},
    "fusion": {"layers": 1, "heads": 2, "mlp_ratio": 2.0},
    "embed_dim": 16,
    "sparsify": {"layers": [1]},
    "mvm": {"decoder_width": 16, "decoder_depth": 1, "decoder_heads": 2},
}
DENSE = {"masking": {"video_ratio": 0.0}, "sparsify": {"enabled": False}, "objectives": {"mvm": 0.0}}


def tiny_config(**overlay) -> ModelConfig:
    raw = copy.deepcopy(TINY)
    for key, value in overlay.items():
        raw = deep_merge(raw, {key: value})
    return section({"model": raw}, ModelConfig, "model")


def make_batch(cfg: ModelConfig, batch: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    v = cfg.video
    length = 9
    ids = torch.randint(1000, 5000, (batch, 12), generator=g)
    am = torch.zeros_like(ids)
    for i in range(batch):
        n = length - (i % 3)        # different lengths -> real padding
        am[i, :n] = 1
        ids[i, 0], ids[i, n - 1] = 101, 102
        ids[i, n:] = 0
    return {
        "video": torch.randn(batch, v.num_frames, 3, v.image_size, v.image_size, generator=g),
        "input_ids": ids, "attention_mask": am, "key": [f"clip_{i:05d}" for i in range(batch)],
    }


@pytest.fixture(scope="session")
def tiny_model() -> SMAUG:
    torch.manual_seed(0)
    return SMAUG(tiny_config())


@pytest.fixture
def config():
    """Factory: ``config(sparsify={...}, ...)`` -> a tiny ModelConfig with those overlays."""
    return tiny_config


@pytest.fixture
def batch_for():
    """Factory: ``batch_for(cfg, batch=4)`` -> a synthetic batch matching ``cfg``."""
    return make_batch
