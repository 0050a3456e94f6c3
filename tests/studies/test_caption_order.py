"""The order study's caption-order negatives: the swap rule reverses what happens first, the
loss prefers a clip's own caption, and the model subclass adds exactly that loss."""

from __future__ import annotations

import torch

from studies.order.caption_order import caption_order_loss, reverse_event_order, swap_clauses
from studies.order.model import CaptionOrderSMAUG
from train.model.objectives import order_loss
from tests.model.conftest import make_batch, tiny_config


def test_a_second_subject_trades_places_with_the_first():
    two = "a cyan triangle moves down, then an orange circle disappears"
    assert reverse_event_order(two) == "an orange circle disappears, then a cyan triangle moves down"
    assert reverse_event_order(reverse_event_order(two)) == two
    assert (reverse_event_order("first a red box grows, and then a blue star appears")
            == "a blue star appears, then a red box grows")


def test_one_subject_keeps_its_place_and_the_connective_reverses():
    assert reverse_event_order("a red square moves left, then turns blue") == \
        "a red square moves left after it turns blue"
    assert reverse_event_order("a red square first moves left and then turns blue") == \
        "a red square moves left after it turns blue"
    assert reverse_event_order("a red  square moves left and afterwards turns blue") == \
        "a red square moves left after it turns blue"


def test_before_and_after_swap_keeping_case():
    assert reverse_event_order("a star spins before it shrinks") == "a star spins after it shrinks"
    assert reverse_event_order("a circle appears after a star rotates") == "a circle appears before a star rotates"
    assert reverse_event_order("After dinner the man cooks") == "Before dinner the man cooks"


def test_captions_without_a_connective_get_no_negative():
    for text in ("a dog runs on the beach", "thenceforth nothing", "a man walks past a bakery afterward",
                 "the then president speaks"):
        assert reverse_event_order(text) is None, text


def test_loss_is_the_order_objective_with_text_and_video_exchanged():
    g = torch.Generator().manual_seed(0)
    video, own, swapped = (torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1) for _ in range(3))
    loss, acc = caption_order_loss(video, own, swapped, torch.tensor(0.1))
    ref, ref_acc = order_loss(video, own, swapped, torch.tensor(0.1))
    assert torch.allclose(loss, ref) and acc == ref_acc
    assert caption_order_loss(own, own, -own, torch.tensor(0.1))[1] == 1.0     # own caption always ahead


def _batch(cfg):
    batch = make_batch(cfg, batch=4)
    batch["text"] = ["a red square moves left, then turns blue", "a green star grows",
                     "a cyan triangle moves down, then an orange circle disappears",
                     "a box spins before it shrinks"]
    return batch


def test_subclass_adds_the_weighted_loss_on_the_captions_that_have_a_swap():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = CaptionOrderSMAUG(cfg)
    model.train()
    batch = _batch(cfg)
    try:
        CaptionOrderSMAUG.weight = 0.0
        torch.manual_seed(1)
        plain = model(batch)
        CaptionOrderSMAUG.weight = 2.0
        CaptionOrderSMAUG.same_words = True
        words = model(batch)
        CaptionOrderSMAUG.same_words = False
        torch.manual_seed(1)
        out = model(batch)
    finally:
        CaptionOrderSMAUG.weight = 0.0
        CaptionOrderSMAUG.same_words = False
    assert "caption_order" not in plain.losses
    assert words.stats["caption_order_share"] == 0.25     # only the two-subject caption keeps its words
    assert out.stats["caption_order_share"] == 0.75
    assert torch.allclose(out.loss, plain.loss + 2.0 * out.losses["caption_order"])
    out.loss.backward()
    assert model.text_proj.weight.grad is not None and model.video_proj.weight.grad.abs().sum() > 0
    assert model._features is None                      # nothing kept between steps


def test_eval_mode_and_batches_without_text_are_plain_smaug():
    cfg = tiny_config()
    model = CaptionOrderSMAUG(cfg)
    batch = _batch(cfg)
    try:
        CaptionOrderSMAUG.weight = 1.0
        model.eval()
        assert "caption_order" not in model(batch).losses
        model.train()
        del batch["text"]
        assert "caption_order" not in model(batch).losses
    finally:
        CaptionOrderSMAUG.weight = 0.0


def test_analysis_tells_the_two_caption_forms_and_measures_how_alike_a_pairs_clips_are():
    from studies.order.analyse import caption_form, pair_cosine

    assert caption_form("a red square moves left, then turns blue") == "one-subject"
    assert caption_form("a cyan triangle moves down, then an orange circle disappears") == "two-subject"
    found = [{"key": "a", "pair_id": "p"}, {"key": "b", "pair_id": "p"}, {"key": "c", "pair_id": "q"}]
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert abs(pair_cosine(found, v) - 0.6) < 1e-6                     # "c" has no partner: left out
    assert pair_cosine(found[2:], v[2:]) is None


def test_same_form_keeps_only_swaps_that_read_like_their_caption():
    one_subject = "a red square moves left, then turns blue"
    assert reverse_event_order(one_subject) == "a red square moves left after it turns blue"
    assert reverse_event_order(one_subject, same_form=True) is None
    before = "a yellow star turns around before it grows"
    assert reverse_event_order(before, same_form=True) == "a yellow star turns around after it grows"
    two = "a cyan triangle moves down, then an orange circle disappears"
    assert reverse_event_order(two, same_form=True) == "an orange circle disappears, then a cyan triangle moves down"


def test_same_form_reaches_the_model_and_needs_the_loss(capsys):
    import pytest

    from studies.levers import main, study_model

    cls = study_model(caption_order=1.0, caption_order_same_form=True)
    assert cls.same_form and cls.weight == 1.0
    assert not study_model(caption_order=1.0).same_form
    with pytest.raises(SystemExit):
        main(["--caption-order-same-form", "--", "--recipe", "smaug"])
    assert "--caption-order-same-form needs --caption-order W > 0" in capsys.readouterr().err


def _words(text: str) -> list[str]:
    return sorted(text.replace(",", " ").split())


def test_same_words_swaps_reorder_the_captions_own_words_and_undo_themselves():
    for caption, swap in (
            ("a cyan triangle moves down, then an orange circle disappears",
             "an orange circle disappears, then a cyan triangle moves down"),
            ("first a purple cross gets bigger, and then a violet triangle contracts",
             "first a violet triangle contracts, and then a purple cross gets bigger"),
            ("a large emerald star turns blue before a pink cross spins on a slate background",
             "a pink cross spins on a slate background before a large emerald star turns blue"),
            ("a circle appears after a star rotates", "a star rotates after a circle appears")):
        assert swap_clauses(caption) == swap
        assert reverse_event_order(caption, same_words=True) == swap
        assert _words(swap) == _words(caption)        # no word of its own for a text side to count
        assert swap_clauses(swap) == caption


def test_same_words_refuses_swaps_that_would_need_a_new_word_or_a_parser():
    for caption in ("a red square moves left, then turns blue",        # one subject: cannot be cut out
                    "a yellow star turns around before it grows",       # "it" points back: no subject
                    "in this clip a box spins, then a star grows",      # no subject at the start
                    "a box spins, then a star grows, then a dot fades",  # three events
                    "a box spins before a star grows after a dot fades",
                    "a dog runs on the beach"):
        assert swap_clauses(caption) is None, caption


def test_same_words_reaches_the_model_and_excludes_same_form(capsys):
    import pytest

    from studies.levers import main, study_model

    cls = study_model(caption_order=1.0, caption_order_same_words=True)
    assert cls.same_words and not cls.same_form
    for argv, message in ((["--caption-order-same-words"], "--caption-order-same-words needs --caption-order W > 0"),
                          (["--caption-order", "1", "--caption-order-same-words", "--caption-order-same-form"],
                           "choose one")):
        with pytest.raises(SystemExit):
            main(argv + ["--", "--recipe", "smaug"])
        assert message in capsys.readouterr().err
