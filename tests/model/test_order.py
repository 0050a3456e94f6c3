"""The temporal-order objective: perturbations really reorder frames, the loss prefers the real
clip, and training on it teaches a model to tell a clip from its reversal."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import ConfigError
from train.model import SMAUG
from train.model.objectives import order_loss, perturb_time
from tests.model.conftest import make_batch, tiny_config


def frames(b=3, t=6):
    # frame i of clip j is filled with the value 10*j + i, so an order is readable
    v = torch.zeros(b, t, 3, 2, 2)
    for j in range(b):
        for i in range(t):
            v[j, i] = 10 * j + i
    return v


def order_of(v):
    return v[:, :, 0, 0, 0].long() % 10


def test_reverse_and_swap_halves_reorder_frames():
    v = frames()
    assert order_of(perturb_time(v, "reverse")).tolist()[0] == [5, 4, 3, 2, 1, 0]
    assert order_of(perturb_time(v, "swap_halves")).tolist()[0] == [3, 4, 5, 0, 1, 2]
    assert torch.equal(order_of(v), order_of(frames()))            # the input is left alone


def test_shuffle_is_never_the_identity_and_keeps_each_clip_its_own_frames():
    v = frames(b=40, t=2)                                          # t=2: half the draws are the identity
    out = perturb_time(v, "shuffle", torch.Generator().manual_seed(0))
    assert (order_of(out) == torch.tensor([1, 0])).all()
    assert torch.equal(out[:, :, 0, 0, 0] // 10, v[:, :, 0, 0, 0] // 10)


def test_bad_perturbation_and_single_frame_are_refused():
    with pytest.raises(ValueError, match="unknown temporal perturbation 'sideways'"):
        perturb_time(frames(), "sideways")
    with pytest.raises(ValueError, match="at least 2 frames"):
        perturb_time(frames(t=1), "reverse")


def test_order_loss_is_low_when_the_caption_prefers_the_real_clip():
    text = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    good, acc_good = order_loss(text, text, -text, torch.tensor(0.1))
    bad, acc_bad = order_loss(text, -text, text, torch.tensor(0.1))
    assert good < 0.01 < 5 < bad
    assert acc_good == 1.0 and acc_bad == 0.0


def test_config_rejects_bad_values_by_name():
    with pytest.raises(ConfigError, match="order.fraction"):
        tiny_config(order={"fraction": 0.0})
    with pytest.raises(ConfigError, match="order.negative"):
        tiny_config(order={"negative": "sideways"})
    with pytest.raises(ConfigError, match="objectives.order"):
        tiny_config(objectives={"order": -1.0})


def test_training_on_the_order_objective_separates_a_clip_from_its_reversal():
    """A few steps on the order loss alone (VTC kept for the features) make the model prefer
    each clip over its reversal for its caption; with the weight at 0 nothing is computed."""
    torch.manual_seed(0)
    cfg = tiny_config(objectives={"vtc": 1.0, "vtm": 0.0, "mlm": 0.0, "mvm": 0.0, "order": 1.0},
                      masking={"video_ratio": 0.0}, sparsify={"enabled": False}, order={"fraction": 1.0})
    model = SMAUG(cfg)
    batch = make_batch(cfg, batch=4)
    # clips whose order is easy to see: brightness ramps up over time
    ramp = torch.linspace(-1, 1, cfg.video.num_frames).view(1, -1, 1, 1, 1)
    batch["video"] = batch["video"] * 0.1 + ramp
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(30):
        out = model(batch)
        first = first if first is not None else float(out.losses["order"].detach())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert float(out.losses["order"]) < 0.5 * first
    assert float(out.stats["order_acc"]) == 1.0
    off = SMAUG(tiny_config(objectives={"vtc": 1.0, "vtm": 0.0, "mlm": 0.0, "mvm": 0.0}))
    assert "order" not in off(make_batch(off.cfg)).losses
