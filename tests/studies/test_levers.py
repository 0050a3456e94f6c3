"""studies.levers composes the studies' SMAUG subclasses: each flag adds its change, and none
gives the plain model."""

from __future__ import annotations

import torch

from studies.caption_bank.model import CaptionBankSMAUG
from studies.levers import main, study_model
from studies.unmasked.model import UnmaskedTuningSMAUG
from train.model import SMAUG
from tests.model.conftest import make_batch, tiny_config


def test_no_flag_is_plain_smaug_and_one_flag_is_that_study():
    assert study_model() is SMAUG
    one = study_model(unmasked_from=5)
    assert issubclass(one, UnmaskedTuningSMAUG) and one.unmasked_from == 5
    assert UnmaskedTuningSMAUG.unmasked_from is None       # the study's class is not changed


def test_two_flags_give_both_changes_in_one_step():
    cls = study_model(bank=64, unmasked_from=1)
    assert issubclass(cls, CaptionBankSMAUG) and issubclass(cls, UnmaskedTuningSMAUG)
    cfg = tiny_config(text={"num_layers": 2, "freeze_layers": 2, "max_len": 16})
    torch.manual_seed(0)
    model = cls(cfg)
    model.train()
    model.set_train_step(1)
    batch = make_batch(cfg, batch=3)
    batch["meta"] = [{"captions": ["a b", "c d"]}, {"captions": ["e f"]}, {"captions": ["g h"]}]
    batch["text"] = ["a b", "e f", "g h"]
    out = model(batch)
    assert out.stats["caption_bank"] == 4.0 and out.stats["unmasked"] == 1.0 and "mvm" not in out.losses


def test_a_negative_value_is_refused_by_name(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--unmasked-from", "-3", "--", "--recipe", "smaug"])
    assert "--unmasked-from must be >= 0, got -3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--verb-negatives", "-1", "--", "--recipe", "smaug"])
    assert "--verb-negatives must be >= 0, got -1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):   # both would need the one caption-negative loss slot
        main(["--caption-order", "1", "--verb-negatives", "1", "--", "--recipe", "smaug"])
    assert "choose one" in capsys.readouterr().err


def test_use_model_reaches_checkpoint_loading_and_refuses_other_classes(tmp_path):
    import pytest

    import train.model
    from studies.runner import use_model
    from pipeline.config import to_dict
    from train.checkpoint import load_model, save_checkpoint

    cls = study_model(change_tokens=True)
    cfg = tiny_config()
    try:
        use_model(cls)
        torch.manual_seed(0)
        saved = cls(cfg)
        save_checkpoint(tmp_path / "ckpt", saved, step=1, state={"model_config": to_dict(cfg)})
        model, _ = load_model(tmp_path / "ckpt")
        assert type(model) is cls                               # built as the study's class
        assert torch.equal(model.video.patch_embed.weight, saved.video.patch_embed.weight)   # its wider patch embedding loaded
        with pytest.raises(TypeError, match="Linear is not a SMAUG subclass"):
            use_model(torch.nn.Linear)
        assert train.model.SMAUG is cls                         # a refused class changes nothing
    finally:
        train.model.SMAUG = SMAUG
