"""The frame-order head: per-frame means land in their time slots, and with the head a clip and
its reversal get different clip features from the first step (without it they barely differ)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from studies.frame_order.model import FrameOrderSMAUG, frame_means
from studies.levers import study_model
from studies.runner import pretrain_with
from tests.model.conftest import make_batch, tiny_config


def test_frame_means_skip_fused_tokens_and_map_frames_to_slots():
    tokens = torch.arange(12.0).view(1, 6, 2)
    ids = torch.tensor([[0, 1, 4, 5, -1, 9]])                 # 4 tokens per frame, 3 frames
    assert frame_means(tokens, ids, 4, 3, 3).tolist() == [[[1.0, 2.0], [5.0, 6.0], [10.0, 11.0]]]
    # 6 test frames into 3 trained slots: frames 0-1 -> slot 0, 2-3 -> 1, 4-5 -> 2 (empty: zeros)
    ids = torch.tensor([[0, 4, 9, 13, -1, 2]])                # frames 0, 1, 2, 3, fused, 0
    out = frame_means(tokens, ids, 4, 6, 3)
    assert out[0, 0].tolist() == [4.0, 5.0]                   # rows 0, 1, 5
    assert out[0, 1].tolist() == [5.0, 6.0]                   # rows 2, 3
    assert out[0, 2].tolist() == [0.0, 0.0]


def test_the_head_makes_a_reversed_clip_differ_from_the_start():
    cfg = tiny_config(sparsify={"enabled": False})
    video = make_batch(cfg, batch=2)["video"]
    torch.manual_seed(0)
    plain = study_model()(cfg).eval()
    torch.manual_seed(0)
    head = study_model(frame_order=True)(cfg).eval()
    assert isinstance(head, FrameOrderSMAUG) and "frame_order.weight" in head.state_dict()
    with torch.no_grad():
        gap_plain = 1 - F.cosine_similarity(plain.encode_video(video)[1], plain.encode_video(video.flip(1))[1])
        gap_head = 1 - F.cosine_similarity(head.encode_video(video)[1], head.encode_video(video.flip(1))[1])
    assert (gap_head > 10 * gap_plain).all(), (gap_plain, gap_head)


def test_training_step_reaches_the_head_through_every_objective():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(frame_order=True)(cfg)
    model.train()
    out = model(make_batch(cfg))
    out.loss.backward()
    assert model.frame_order.weight.grad.abs().sum() > 0


def test_an_unknown_program_is_refused():
    with pytest.raises(ValueError, match="unknown program 'train'"):
        pretrain_with(study_model(frame_order=True), [], program="train")
