"""Order pooling (studies/order_pooling): the video feature adds the tokens' late-minus-early
moment, which changes sign when the clip is played backwards; at step 0 the model is the default."""

from __future__ import annotations

import pytest
import torch

from studies.levers import study_model
from studies.order_pooling.model import OrderPoolingSMAUG, temporal_moment
from tests.model.conftest import make_batch, tiny_config
from train.model import SMAUG


def test_the_moment_is_late_minus_early_and_flips_with_time():
    # 3 frames of 2 patches; frame 0 tokens are 1, frame 2 tokens are 5, frame 1 is ignored (tau 0)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5]])
    x = torch.tensor([1.0, 1.0, 3.0, 3.0, 5.0, 5.0])[None, :, None]
    tokens = torch.cat([torch.zeros(1, 1, 1), x], dim=1)
    m = temporal_moment(tokens, ids, (3, 1, 2))
    assert m.item() == pytest.approx(5 - 1)
    reversed_ids = torch.tensor([[4, 5, 2, 3, 0, 1]])       # the same tokens, frames played backwards
    assert temporal_moment(tokens, reversed_ids, (3, 1, 2)).item() == pytest.approx(-m.item())
    fused = torch.tensor([[0, 1, 2, 3, 4, -1]])              # a fused token belongs to no frame
    assert temporal_moment(tokens, fused, (3, 1, 2)).item() == pytest.approx(5 - 1)
    unequal = torch.tensor([[0, 4, 4, 4, 4, 5]])             # 1 early token, 5 late ones: still 5 - 1
    assert temporal_moment(tokens, unequal, (3, 1, 2)).item() == pytest.approx(
        (1 + 3 + 3 + 5 + 5) / 5 - 1)
    late_only = torch.tensor([[4, 5, 4, 5, 4, 5]])
    assert temporal_moment(tokens, late_only, (3, 1, 2)).abs().sum() == 0
    assert temporal_moment(tokens, ids, (1, 2, 3)).abs().sum() == 0   # one frame: nothing to order
    with pytest.raises(ValueError, match="token ids"):
        temporal_moment(tokens, ids[:, :5], (3, 1, 2))


def test_at_step_zero_it_is_the_default_model_and_the_moment_learns():
    cfg = tiny_config()
    torch.manual_seed(0)
    plain = SMAUG(cfg).eval()
    model = study_model(order_pooling=True)(cfg).eval()
    assert isinstance(model, OrderPoolingSMAUG)
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["moment_proj.bias", "moment_proj.weight"]
    video = make_batch(cfg)["video"]
    with torch.no_grad():
        assert torch.allclose(model.encode_video(video)[1], plain.encode_video(video)[1], atol=1e-6)
    model.train()
    out = model(make_batch(cfg))
    out.loss.backward()
    assert model.moment_proj.weight.grad.abs().sum() > 0


def test_after_learning_a_clip_and_its_reversal_get_different_features():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(order_pooling=True)(cfg).eval()
    torch.nn.init.normal_(model.moment_proj.weight, std=0.5)
    video = make_batch(cfg)["video"]
    with torch.no_grad():
        forward = model.encode_video(video, sparsify=False)[1]
        backward = model.encode_video(video.flip(1), sparsify=False)[1]
    assert (forward * backward).sum(-1).max() < 0.999


def test_a_feature_without_its_encoding_is_refused():
    cfg = tiny_config()
    model = study_model(order_pooling=True)(cfg).eval()
    with pytest.raises(RuntimeError, match="token ids"):
        model.video_feature(torch.zeros(2, 5, cfg.video.width))
