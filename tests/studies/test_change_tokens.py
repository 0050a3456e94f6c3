"""Change tokens (studies/change_tokens): each patch carries its difference from the frame before,
taken before masking; a reversed clip's tokens differ; the swap of the tower's patchify is undone."""

from __future__ import annotations

import pytest
import torch

import train.model.video_encoder as video_encoder
from studies.change_tokens.model import ChangeTokenSMAUG, frame_change, patchify_with_change
from studies.levers import study_model
from tests.model.conftest import make_batch, tiny_config
from train.model.patches import patchify


def test_change_is_the_difference_from_the_frame_before():
    video = torch.zeros(1, 3, 3, 4, 4)
    video[0, 1, :, 0, 0] = 1.0       # a pixel lights up in frame 1 and stays
    video[0, 2, :, 0, 0] = 1.0
    change = frame_change(video)
    assert change[0, 0].abs().sum() == 0                 # frame 0: nothing before it
    assert change[0, 1, :, 0, 0].tolist() == [1.0, 1.0, 1.0] and change[0, 1].abs().sum() == 3
    assert change[0, 2].abs().sum() == 0                 # no change since frame 1
    patches = patchify_with_change(video, 2)
    assert patches.shape == (1, 3 * 4, 2 * 2 * 2 * 3)
    assert torch.equal(patches[..., :12], patchify(video, 2))


def test_a_static_clip_has_zero_change_halves_and_a_reversal_flips_their_sign():
    g = torch.Generator().manual_seed(0)
    still = torch.randn(1, 1, 3, 8, 8, generator=g).expand(1, 4, 3, 8, 8)
    assert patchify_with_change(still, 4)[..., 48:].abs().max() == 0
    moving = torch.randn(1, 4, 3, 8, 8, generator=g)
    forward = frame_change(moving)[:, 1:]
    backward = frame_change(moving.flip(1))[:, 1:].flip(1)
    assert torch.allclose(forward, -backward)


def test_the_model_trains_with_change_tokens_and_restores_the_towers_patchify():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(change_tokens=True)(cfg).train()
    assert isinstance(model, ChangeTokenSMAUG)
    width = cfg.video.tubelet * cfg.video.patch_size ** 2 * 3
    assert model.video.patch_embed.in_features == 2 * width
    out = model(make_batch(cfg))
    out.loss.backward()
    change_half = model.video.patch_embed.weight.grad[:, width:]
    assert change_half.abs().sum() > 0                   # the change half is read and learns
    assert video_encoder.patchify is patchify            # swapped only for the forward


def test_the_swap_is_undone_when_the_forward_fails():
    cfg = tiny_config()
    model = study_model(change_tokens=True)(cfg).eval()
    with pytest.raises(ValueError, match="must be"):
        model.encode_video(torch.zeros(1, 4, 1, 32, 32))  # one channel: the tower refuses it
    assert video_encoder.patchify is patchify


def test_pretrained_tower_weights_are_refused_by_name():
    cfg = tiny_config(video={"init": "/nonexistent/weights.safetensors"})
    with pytest.raises(ValueError, match="model.video.init must be null"):
        study_model(change_tokens=True)(cfg)
