"""AdamW parameter groups and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from train.schedule import WarmupCosine, warmup_cosine_lr
from train.trainer import build_optimizer, param_groups


def test_no_decay_on_norms_biases_embeddings_tokens(tiny_params, build_tiny):
    # text tower trainable too, so its embeddings and LayerNorms must land in the right group
    model, cfg = build_tiny(tiny_params("smaug", "model.text.freeze_layers=0"))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names_d, names_n = set(decay["names"]), set(no_decay["names"])
    assert not names_d & names_n
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # every trainable parameter is in exactly one group (tied weights appear once)
    assert names_d | names_n <= trainable
    assert len(names_d) + len(names_n) == len({id(p) for p in model.parameters() if p.requires_grad})
    for name in names_d:
        assert not name.endswith("bias") and "norm" not in name.lower(), name
        assert "embeddings" not in name and ".pos." not in name and "token" not in name, name
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        if not p.requires_grad or name not in names_d | names_n:
            continue
        owner = modules[name.rsplit(".", 1)[0]]
        if name.endswith(".bias") or isinstance(owner, (torch.nn.LayerNorm, torch.nn.Embedding)):
            assert name in names_n, name
    for expected in ("video.cls_token", "video.pos.spatial", "vtc.log_temperature",
                     "text.bert.embeddings.word_embeddings.weight", "video.blocks.0.norm1.weight"):
        assert expected in names_n, expected
    for expected in ("video.blocks.0.attn.qkv.weight", "video.blocks.0.mlp.0.weight",
                     "fusion.layers.0.cross_attn.q.weight", "video_proj.weight"):
        assert expected in names_d, expected
    opt = build_optimizer(model, cfg)
    assert [g["weight_decay"] for g in opt.param_groups] == [cfg.weight_decay, 0.0]
    assert "names" not in opt.param_groups[0]  # keeps optimiser state weights_only-safe


def test_schedule_warmup_then_cosine():
    kw = dict(lr=1.0, min_lr=0.1, warmup=4, steps=14)
    values = [warmup_cosine_lr(s, **kw) for s in range(14)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)  # cosine starts at the peak
    assert values[-1] == pytest.approx(0.1)  # and ends at the floor
    mid = 4 + (14 - 4 - 1) / 2
    assert warmup_cosine_lr(int(mid), **kw) < 0.55 + 0.1
    assert all(a >= b for a, b in zip(values[3:], values[4:]))  # monotone decay
    assert warmup_cosine_lr(7, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 3 / 9)))
    # no warm-up: the first step already runs at the peak
    assert warmup_cosine_lr(0, lr=2.0, min_lr=0.0, warmup=0, steps=10) == 2.0


def test_schedule_sets_group_rates_with_scale():
    p1, p2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p1]}, {"params": [p2], "lr_scale": 0.1}], lr=1.0)
    sched = WarmupCosine(opt, lr=1.0, min_lr=0.0, warmup=2, steps=10)
    assert sched.apply(0) == 0.5
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    state = sched.state_dict()
    other = WarmupCosine(opt, lr=1.0, min_lr=0.0, warmup=2, steps=10)
    other.load_state_dict(state)
    assert other.step_count == 0
