"""The unmasked-tuning study: steps from ``unmasked_from`` on encode every patch and drop MVM,
earlier steps are the plain recipe, and the model's config is left as it was."""

from __future__ import annotations

import pytest
import torch

from studies.runner import pretrain_with, split_args
from studies.unmasked.model import UnmaskedTuningSMAUG
from tests.model.conftest import make_batch, tiny_config


def test_steps_from_the_threshold_see_every_patch_and_skip_mvm(monkeypatch):
    monkeypatch.setattr(UnmaskedTuningSMAUG, "unmasked_from", 3)
    cfg = tiny_config()
    torch.manual_seed(0)
    model = UnmaskedTuningSMAUG(cfg)
    model.train()
    batch = make_batch(cfg)
    model.set_train_step(2)
    before = model(batch)
    model.set_train_step(3)
    after = model(batch)
    assert "mvm" in before.losses and "unmasked" not in before.stats
    assert before.stats["video_tokens_visible"] < before.stats["video_tokens_input"]
    assert "mvm" not in after.losses and after.stats["unmasked"] == 1.0
    assert after.stats["video_tokens_visible"] == after.stats["video_tokens_input"]
    assert model.cfg is cfg                          # the step's copy is not left behind
    after.loss.backward()
    assert model.video.patch_embed.weight.grad.abs().sum() > 0
    model.eval()                                     # evaluation never depended on the step
    assert not model.unmasked_now()


def test_without_a_threshold_it_is_plain_smaug(monkeypatch):
    monkeypatch.setattr(UnmaskedTuningSMAUG, "unmasked_from", None)
    model = UnmaskedTuningSMAUG(tiny_config())
    model.train()
    model.set_train_step(10_000)
    assert "mvm" in model(make_batch(model.cfg)).losses


def test_runner_needs_the_separator_and_a_smaug_subclass():
    import argparse

    parser = argparse.ArgumentParser(prog="studies.x.train")
    parser.add_argument("--n", type=int)
    args, rest = split_args(["--n", "2", "--", "--recipe", "smaug"], parser)
    assert args.n == 2 and rest == ["--recipe", "smaug"]
    with pytest.raises(SystemExit, match="usage: python -m studies.x.train"):
        split_args(["--n", "2"], parser)
    with pytest.raises(TypeError, match="not a SMAUG subclass"):
        pretrain_with(torch.nn.Linear, [])
