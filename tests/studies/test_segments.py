"""Clause-segment alignment (studies/segments): a caption splits at its temporal connective into
the clause of its first event and of its second, a clip into its early and late frames, and the
VTC score then depends on which half shows which clause's event."""

from __future__ import annotations

import pytest
import torch

from studies.levers import study_model
from studies.segments.clauses import Connectives, clause_masks
from studies.segments.model import ClauseSegmentSMAUG, half_means
from tests.model.conftest import DENSE, tiny_config
from train.data.text import load_tokenizer, tokenize
from train.model import SMAUG


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(None)


def split(tok, captions):
    ids, mask = tokenize(tok, captions, 32)
    conn = Connectives.from_vocab(f"{tok.name_or_path}/vocab.txt",
                                  (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id))
    first, second, ok = clause_masks(ids, mask, conn)
    words = lambda i, m: " ".join(tok.convert_ids_to_tokens(ids[i][m[i]].tolist())).replace(" ##", "")
    return [(bool(ok[i]), words(i, first), words(i, second)) for i in range(len(captions))]


def test_a_caption_splits_into_its_first_and_second_event(tok):
    got = split(tok, ["a cyan triangle moves down, then an orange circle disappears",
                      "first a red square turns blue, and then it moves left",
                      "a star spins before it shrinks",
                      "a red square turns blue after a green circle appears",
                      "a dog jumps and afterwards barks"])
    assert got[0] == (True, "a cyan triangle moves down ,", "an orange circle disappears")
    assert got[1] == (True, "first a red square turns blue , and", "it moves left")
    assert got[2] == (True, "a star spins", "it shrinks")
    # "after": the clause after the word happened first
    assert got[3] == (True, "a green circle appears", "a red square turns blue")
    assert got[4] == (True, "a dog jumps and", "barks")


def test_captions_without_one_clear_connective_stay_whole(tok):
    captions = ["a red square turns blue", "after the rain a man walks in", "the then president speaks",
                "x moves then y moves before z stops", "a man walks past a bakery afterward"]
    for caption, (ok, first, second) in zip(captions, split(tok, captions)):
        assert not ok, caption
        assert first == second and "then" not in first.split()[1:2], caption
    assert split(tok, captions[:1])[0][1] == "a red square turns blue"


def test_the_halves_are_the_early_and_late_frames():
    # 3 frames of 2 patches: frame 0 tokens are 1, frame 1 (the middle) 3, frame 2 5
    ids = torch.tensor([[0, 1, 2, 3, 4, -1]])
    x = torch.tensor([1.0, 1.0, 3.0, 3.0, 5.0, 9.0])[None, :, None]
    tokens = torch.cat([torch.zeros(1, 1, 1), x], dim=1)
    early, late, has_early, has_late = half_means(tokens, ids, (3, 1, 2))
    assert (early.item(), late.item()) == (1.0, 5.0)            # middle frame and fused token in neither
    early, late, has_early, has_late = half_means(tokens, torch.tensor([[4, 5, 4, 5, 4, -1]]), (3, 1, 2))
    assert not has_early.item() and has_late.item() and early.item() == 0.0
    even = half_means(tokens, torch.tensor([[0, 1, 2, 3, 4, 5]]), (2, 1, 3))   # 2 frames of 3 patches
    assert (even[0].item(), even[1].item()) == (pytest.approx(5 / 3), pytest.approx(17 / 3))
    with pytest.raises(ValueError, match="token ids"):
        half_means(tokens, ids[:, :5], (3, 1, 2))


def test_a_caption_and_its_swap_get_different_features_and_weight_zero_is_the_default(tok):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = study_model(segments=0.5)(cfg).eval()
    assert isinstance(model, ClauseSegmentSMAUG)
    ids, mask = tokenize(tok, ["a cyan triangle moves down, then an orange circle disappears",
                               "an orange circle disappears, then a cyan triangle moves down"], 16)
    with torch.no_grad():
        own, swapped = model.encode_text(ids, mask)[1]
        plain_own, plain_swapped = SMAUG.text_feature(model, model.text(ids, mask), mask)
    e = cfg.embed_dim
    assert own.shape == (3 * e,)
    # the whole-caption parts read nearly alike, the clause parts trade places
    assert torch.dot(plain_own, plain_swapped) > 0.95
    assert torch.dot(own, swapped) < torch.dot(plain_own, plain_swapped) - 0.1
    first, second = slice(e, 2 * e), slice(2 * e, 3 * e)
    assert torch.dot(own[first], swapped[second]) > torch.dot(own[first], swapped[first]) + 0.02
    assert torch.dot(own[second], swapped[first]) > torch.dot(own[second], swapped[second]) + 0.02
    assert study_model(segments=0.0) is SMAUG
    with pytest.raises(RuntimeError, match="ids of the caption"):
        model.text_feature(torch.zeros(1, 5, model.text.hidden_size), torch.ones(1, 5, dtype=torch.long))


def toy_batch(tok, cfg, flip: torch.Tensor) -> dict:
    """Clips whose first two frames are red and last two blue (flip: the other way round), each
    with the caption telling its colours in order: only order tells the two kinds apart."""
    v = cfg.video
    red = torch.zeros(3, v.image_size, v.image_size)
    red[0] = 1.0
    blue = torch.zeros_like(red)
    blue[2] = 1.0
    videos, captions = [], []
    for f in flip.tolist():
        a, b = (blue, red) if f else (red, blue)
        videos.append(torch.stack([a, a, b, b]) + 0.05 * torch.randn(4, *red.shape))
        first, second = ("blue", "red") if f else ("red", "blue")
        captions.append(f"the screen is {first}, then the screen is {second}")
    ids, mask = tokenize(tok, captions, cfg.text.max_len)
    return {"video": torch.stack(videos), "input_ids": ids, "attention_mask": mask,
            "key": [f"clip_{i}" for i in range(len(captions))]}


def order_margins(model, tok, cfg) -> list[float]:
    """For a red-then-blue and a blue-then-red clip: own caption's score minus its swap's."""
    batch = toy_batch(tok, cfg, torch.tensor([0, 1]))
    model.eval()
    with torch.no_grad():
        v = model.encode_video(batch["video"])[1]
        t = model.encode_text(batch["input_ids"], batch["attention_mask"])[1]
    sim = v @ t.t()
    return (sim.diag() - sim.flip(1).diag()).tolist()


def train_toy(tok, cfg, segments: float, steps: int = 30):
    torch.manual_seed(0)
    model = study_model(segments=segments)(cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        model.train()
        out = model(toy_batch(tok, cfg, torch.randint(0, 2, (8,), generator=g)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return model


def test_vtc_learns_which_half_shows_which_clause(tok):
    """The same 30 VTC steps: the default's score cannot tell a caption from its swap (its text
    features of the two are nearly one), the clause-segment score learns to, for both orders."""
    cfg = tiny_config(masking=DENSE["masking"], sparsify=DENSE["sparsify"],
                      objectives={"vtm": 0.0, "mlm": 0.0, "mvm": 0.0}, text={"max_len": 16})
    plain = order_margins(train_toy(tok, cfg, 0.0), tok, cfg)
    segments = order_margins(train_toy(tok, cfg, 0.5), tok, cfg)
    assert max(abs(m) for m in plain) < 0.01, plain
    assert min(segments) > 0.3, segments


def test_a_checkpoint_loads_back_with_the_same_flags_only(tmp_path, capsys, tok):
    import argparse

    import train.model
    from pipeline.config import to_dict
    from studies.levers import add_model_flags, check_model_flags, main, use_model_of_flags
    from train.checkpoint import CheckpointError, load_model, save_checkpoint

    cfg = tiny_config()
    flags = ["--segments", "0.5", "--conv-stem", "--conv-stem-kind", "clip3d-res"]   # composed as in the runs
    parser = argparse.ArgumentParser()
    add_model_flags(parser)
    ids, mask = tokenize(tok, ["a star spins before it shrinks"], 16)
    video = torch.randn(1, cfg.video.num_frames, 3, cfg.video.image_size, cfg.video.image_size)
    try:
        use_model_of_flags(parser.parse_args(flags))
        torch.manual_seed(0)
        saved = train.model.SMAUG(cfg).eval()
        save_checkpoint(tmp_path / "ckpt", saved, step=1, state={"model_config": to_dict(cfg)})
        model, _ = load_model(tmp_path / "ckpt")
        model.eval()
        with torch.no_grad():
            assert torch.equal(model.encode_text(ids, mask)[1], saved.encode_text(ids, mask)[1])
            assert torch.equal(model.encode_video(video)[1], saved.encode_video(video)[1])
        use_model_of_flags(parser.parse_args(flags[2:]))             # the same tower without segments
        with pytest.raises(CheckpointError, match="unexpected"):
            load_model(tmp_path / "ckpt")
    finally:
        train.model.SMAUG = SMAUG
    for bad, message in ((["--segments", "1.0"], "--segments must be in [0, 1), got 1.0"),
                         (["--segments", "0.5", "--order-pooling"], "choose one")):
        with pytest.raises(SystemExit):
            check_model_flags(parser, parser.parse_args(bad))
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--segments", "-0.1", "--", "--recipe", "smaug"])
    assert "--segments must be in [0, 1), got -0.1" in capsys.readouterr().err
