"""Conv stem (studies/conv_stem): each visible patch is embedded by stride-2 convolutions; masking
still embeds only the visible patches; bad settings are refused by name."""

from __future__ import annotations

import pytest
import torch

from studies.conv_stem.model import ConvStemSMAUG, PatchConvStem
from studies.levers import main as levers_main, study_model
from tests.model.conftest import make_batch, tiny_config
from train.model.patches import patchify
from train.model.smaug import SMAUG as SMAUG_CLASS


def test_the_stem_embeds_each_patch_on_its_own():
    torch.manual_seed(0)
    stem = PatchConvStem(patch=8, tubelet=1, width=16, base_channels=8)
    video = torch.randn(2, 2, 3, 16, 16)
    patches = patchify(video, 8)                                   # [2, 8, 192]
    tokens = stem(patches)
    assert tokens.shape == (2, 8, 16)
    changed = patches.clone()
    changed[1, 3] += 1.0                                           # one patch of one clip
    moved = stem(changed)
    differs = (moved - tokens).abs().amax(-1) > 1e-6
    assert differs.nonzero().tolist() == [[1, 3]]                  # only that token moves
    # a subset of patches (what masking keeps) gets the same tokens as in the full clip
    assert torch.allclose(stem(patches[:, [0, 5]]), tokens[:, [0, 5]], atol=1e-6)


def test_a_tubelet_reads_both_frames_and_a_bad_patch_is_refused():
    torch.manual_seed(0)
    stem = PatchConvStem(patch=4, tubelet=2, width=8, base_channels=4)
    video = torch.randn(1, 2, 3, 4, 4)
    tokens = stem(patchify(video, 4, 2))
    later = video.clone()
    later[0, 1] += 1.0                                             # only the second frame changes
    assert not torch.allclose(stem(patchify(later, 4, 2)), tokens)
    with pytest.raises(ValueError, match="power-of-two patch size"):
        PatchConvStem(patch=12, tubelet=1, width=8)
    with pytest.raises(ValueError, match="built for 96"):
        stem(torch.zeros(1, 3, 49))


def test_the_model_trains_with_a_conv_stem_under_masking():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(conv_stem=True)(cfg).train()
    assert isinstance(model, ConvStemSMAUG) and isinstance(model.video.patch_embed, PatchConvStem)
    out = model(make_batch(cfg))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    first = model.video.patch_embed.convs[0].weight.grad
    assert first is not None and first.abs().sum() > 0             # the stem learns through the loss


def test_bad_combinations_are_refused_by_name():
    with pytest.raises(ValueError, match="model.video.init must be null"):
        study_model(conv_stem=True)(tiny_config(video={"init": "/nonexistent/weights.safetensors"}))
    with pytest.raises(ValueError, match="change_tokens and conv_stem"):
        study_model(change_tokens=True, conv_stem=True)
    with pytest.raises(SystemExit):
        levers_main(["--change-tokens", "--conv-stem", "--", "--params", "params.yaml"])


def test_the_clip_tokenizer_gives_each_token_its_neighbouring_frames():
    from studies.conv_stem.model import ClipConvTokenizer

    torch.manual_seed(0)
    tokenizer = ClipConvTokenizer(patch=4, base_channels=4).eval()
    video = torch.randn(1, 4, 3, 8, 8)
    tokens = tokenizer(video)
    assert tokens.shape == (1, 4 * 2 * 2, 8)                       # time-major, one per patch
    later = video.clone()
    later[0, 3] += 1.0                                             # only the last frame changes
    moved = (tokenizer(later) - tokens).abs().amax(-1).view(4, 4) > 1e-6
    assert moved[3].all() and moved[2].any()                       # frame 2's tokens see frame 3
    with pytest.raises(ValueError, match="do not split into 4-px patches"):
        tokenizer(torch.zeros(1, 4, 3, 6, 8))


def test_the_model_trains_with_a_clip_tokenizer_and_restores_patchify():
    import train.model.video_encoder as video_encoder

    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(conv_stem=True, conv_stem_kind="clip3d")(cfg).train()
    out = model(make_batch(cfg))
    out.loss.backward()
    assert model.video.tokenizer.convs[0].weight.grad.abs().sum() > 0
    assert video_encoder.patchify is patchify                      # swapped only for the forward
    with pytest.raises(ValueError, match="tubelet must be 1"):
        study_model(conv_stem=True, conv_stem_kind="clip3d")(tiny_config(video={"tubelet": 2}))
    with pytest.raises(ValueError, match="unknown conv stem kind"):
        study_model(conv_stem=True, conv_stem_kind="clip2d")(cfg)
    with pytest.raises(SystemExit):
        levers_main(["--conv-stem-kind", "clip3d", "--", "--params", "params.yaml"])


def test_the_residual_clip_tokenizer_starts_as_the_default_tower():
    from train.model.video_encoder import VideoEncoder

    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(conv_stem=True, conv_stem_kind="clip3d-res")(cfg).eval()
    default = VideoEncoder(cfg.video, cfg.sparsify).eval()
    state = {k: v for k, v in model.video.state_dict().items() if not k.startswith("tokenizer.")}
    pixels = cfg.video.patch_size ** 2 * 3
    state["patch_embed.weight"] = state["patch_embed.weight"][:, :pixels]
    default.load_state_dict(state)
    video = make_batch(cfg)["video"]
    assert torch.allclose(model.video(video).tokens, default(video).tokens, atol=1e-6)
    model.train()
    out = model(make_batch(cfg))
    out.loss.backward()
    assert model.video.patch_embed.weight.grad[:, pixels:].abs().sum() > 0   # the CNN's share grows


def test_the_readers_of_checkpoints_build_the_model_the_same_flags_trained(tmp_path, capsys):
    # The probe and the order analysis take studies.levers' model flags: a GroupNorm clip
    # tokenizer's checkpoint loads only into a model built with --conv-stem-norm group.
    import argparse

    import train.model
    from pipeline.config import to_dict
    from studies.levers import add_model_flags, check_model_flags, use_model_of_flags
    from studies.order import analyse, probe
    from train.checkpoint import CheckpointError, load_model, save_checkpoint

    cfg = tiny_config()
    flags = ["--conv-stem", "--conv-stem-kind", "clip3d", "--conv-stem-norm", "group"]
    parser = argparse.ArgumentParser()
    add_model_flags(parser)
    try:
        use_model_of_flags(parser.parse_args(flags))
        torch.manual_seed(0)
        saved = train.model.SMAUG(cfg)
        assert isinstance(saved.video.tokenizer.convs[1], torch.nn.GroupNorm)
        save_checkpoint(tmp_path / "ckpt", saved, step=1, state={"model_config": to_dict(cfg)})
        model, _ = load_model(tmp_path / "ckpt")
        assert torch.equal(model.video.tokenizer.convs[1].weight, saved.video.tokenizer.convs[1].weight)
        use_model_of_flags(parser.parse_args(flags[:-2]))           # the same kind without the norm
        with pytest.raises(CheckpointError, match="unexpected"):
            load_model(tmp_path / "ckpt")
    finally:
        train.model.SMAUG = SMAUG_CLASS
    with pytest.raises(SystemExit):
        check_model_flags(parser, parser.parse_args(["--conv-stem-norm", "group"]))
    assert "need --conv-stem" in capsys.readouterr().err
    for program in (probe.main, analyse.main):
        with pytest.raises(SystemExit):
            program(["--arm", "a=b", "--conv-stem", "--change-tokens"])
        assert "choose one" in capsys.readouterr().err
