"""Verb negatives (studies/verb_negatives): one event phrase replaced by another event class's, the
objects kept; the subclass adds the two-way loss on the captions that have one."""

from __future__ import annotations

import random

import pytest
import torch

from studies.levers import study_model
from studies.verb_negatives.model import VerbNegativeSMAUG
from studies.verb_negatives.verbs import _FIND, replace_event
from tests.model.conftest import make_batch, tiny_config


def _event_classes(caption: str) -> list[str]:
    return [m.lastgroup for m in _FIND.finditer(caption)]


def test_one_event_changes_class_and_the_objects_stay():
    caption = "a purple square turns cyan, then a blue star gets bigger"
    assert _event_classes(caption) == ["recolour", "grow"]
    for seed in range(20):
        negative = replace_event(caption, random.Random(seed))
        assert negative.startswith("a purple square ") and " then a blue star " in negative
        classes = _event_classes(negative)
        assert len(classes) == 2 and classes != ["recolour", "grow"]
        assert classes[0] == "recolour" or classes[1] == "grow"      # exactly one event replaced
    assert replace_event(caption, random.Random(3)) == replace_event(caption, random.Random(3))


def test_paraphrased_events_are_found_and_captions_without_one_get_none():
    assert _event_classes("a round dot changes colour to pink before a cross drifts to the left") == \
        ["recolour", "move"]
    assert _event_classes("a star vanishes") == ["disappear"]
    assert replace_event("a dog on the beach at sunset", random.Random(0)) is None


def test_the_subclass_adds_the_weighted_loss_and_keeps_nothing_between_steps():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(verb_negatives=2.0)(cfg).train()
    assert isinstance(model, VerbNegativeSMAUG)
    batch = make_batch(cfg, batch=4)
    batch["text"] = ["a red square moves left, then turns blue", "a green star on grass",
                     "a cyan triangle moves down, then an orange circle disappears", "a box spins"]
    out = model(batch, torch.Generator().manual_seed(0))
    assert out.stats["verb_negative_share"] == 0.75
    assert torch.allclose(out.loss, sum(w * out.losses[k] for k, w in
                                        [("vtc", 1), ("vtm", 1), ("mlm", 1), ("mvm", 1), ("verb_negative", 2.0)]
                                        if k in out.losses))
    out.loss.backward()
    assert model.video_proj.weight.grad.abs().sum() > 0
    assert model._features is None
    model.eval()
    assert "verb_negative" not in model(batch).losses
    with pytest.raises(ValueError, match="choose one"):
        study_model(caption_order=1.0, verb_negatives=1.0)
