"""The caption-bank study: the bank keeps each caption once and evicts the oldest, its loss is
in-batch VTC when the bank holds just the batch, and the model subclass banks exactly the
features VTC reads, adds no parameter and refuses a text tower that trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from studies.caption_bank.bank import CaptionBank, bank_v2t_loss, t2v_loss
from studies.caption_bank.model import CaptionBankSMAUG, clip_captions
from train.data.text import load_tokenizer, tokenize
from train.model import SMAUG
from train.model.objectives import vtc_loss
from tests.model.conftest import make_batch, tiny_config

FROZEN = {"num_layers": 2, "freeze_layers": 2, "max_len": 16}


def _encode_by_length(captions):
    """A stand-in encoder for the bank-only tests: feature = [len(caption), 1]."""
    return torch.tensor([[float(len(c)), 1.0] for c in captions])


def test_bank_stores_each_caption_once_and_evicts_the_oldest_first():
    bank = CaptionBank(3)
    assert bank.add(["a", "bb", "a"], _encode_by_length) == 2
    assert bank.add(["bb", "ccc"], _encode_by_length) == 1           # "bb" is not encoded again
    assert len(bank) == 3 and torch.equal(bank.stored()[:, 0], torch.tensor([1.0, 2.0, 3.0]))
    bank.add(["dddd"], _encode_by_length)                           # full: "a" makes room
    assert "a" not in bank and "dddd" in bank and len(bank) == 3
    assert bank.stored()[bank.rows["dddd"], 0] == 4.0
    pos = bank.positives([["bb", "zz"], ["dddd", "ccc"]])
    by_row = {row: c for c, row in bank.rows.items()}   # columns are rows, not arrival order
    assert pos.tolist() == [[by_row[r] == "bb" for r in range(3)],
                            [by_row[r] in ("dddd", "ccc") for r in range(3)]]
    with pytest.raises(ValueError, match="size must be >= 1"):
        CaptionBank(0)
    with pytest.raises(RuntimeError, match="empty"):
        CaptionBank(2).stored()


def test_with_one_caption_per_clip_and_only_the_batch_banked_it_is_in_batch_vtc():
    g = torch.Generator().manual_seed(0)
    video = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    temperature = torch.tensor(0.07)
    v2t = bank_v2t_loss(video, text, torch.eye(5, dtype=torch.bool), temperature)
    assert torch.allclose(v2t, F.cross_entropy(video @ text.t() / temperature, torch.arange(5)))
    assert torch.allclose(0.5 * (v2t + t2v_loss(video, text, temperature)), vtc_loss(video, text, temperature))


def test_any_own_caption_counts_and_a_clip_without_one_is_refused():
    video = torch.tensor([[1.0, 0.0]])
    bank = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    t = torch.tensor(0.1)
    near = bank_v2t_loss(video, bank, torch.tensor([[False, True, False]]), t)
    far = bank_v2t_loss(video, bank, torch.tensor([[True, False, False]]), t)
    both = bank_v2t_loss(video, bank, torch.tensor([[True, True, False]]), t)
    assert both < near < far                        # a second positive only adds probability mass
    with pytest.raises(ValueError, match="none of its captions"):
        bank_v2t_loss(video, bank, torch.tensor([[False, False, False]]), t)


def _captioned_batch(cfg):
    batch = make_batch(cfg, batch=3)
    captions = [["a red star grows", "a crimson star expands"], ["a blue box moves left"],
                ["a green circle turns red, then a red star grows", "a red star grows"]]
    batch["meta"] = [{"captions": c} for c in captions]
    batch["text"] = [c[-1] for c in captions]
    tok = load_tokenizer(None)
    batch["input_ids"], batch["attention_mask"] = tokenize(tok, batch["text"], cfg.text.max_len)
    return batch, captions


def test_subclass_banks_every_caption_with_the_features_vtc_reads(monkeypatch):
    cfg = tiny_config(text=FROZEN)
    monkeypatch.setattr(CaptionBankSMAUG, "size", 16)
    torch.manual_seed(0)
    model = CaptionBankSMAUG(cfg)
    model.train()
    batch, captions = _captioned_batch(cfg)
    assert clip_captions(batch) == [list(dict.fromkeys(c)) for c in captions]
    out = model(batch)
    unique = {c for cs in captions for c in cs}
    assert out.stats["caption_bank"] == len(unique) == len(model.vtc.bank)
    assert model.vtc.batch is None                       # nothing kept between steps
    # projecting a banked feature gives exactly the text feature VTC computes for that caption
    tok = load_tokenizer(None)
    ids, mask = tokenize(tok, ["a crimson star expands"], cfg.text.max_len)
    _, feat = model.encode_text(ids, mask)
    banked = model.vtc.bank.stored()[model.vtc.bank.rows["a crimson star expands"]]
    assert torch.allclose(F.normalize(model.text_proj(banked), dim=-1), feat[0], atol=1e-5)
    out.loss.backward()
    assert model.text_proj.weight.grad.abs().sum() > 0 and model.video_proj.weight.grad.abs().sum() > 0
    # no parameter of its own: its weights load into a plain SMAUG
    assert set(model.state_dict()) == set(SMAUG(cfg).state_dict())


def test_bank_changes_the_loss_and_eval_mode_is_in_batch_vtc(monkeypatch):
    cfg = tiny_config(text=FROZEN)
    batch, _ = _captioned_batch(cfg)
    torch.manual_seed(0)
    plain = SMAUG(cfg)
    monkeypatch.setattr(CaptionBankSMAUG, "size", 16)
    banked = CaptionBankSMAUG(cfg)
    banked.load_state_dict(plain.state_dict())
    v, t = F.normalize(torch.randn(3, cfg.embed_dim), dim=-1), F.normalize(torch.randn(3, cfg.embed_dim), dim=-1)
    banked.eval()
    assert torch.allclose(banked.vtc(v, t), plain.vtc(v, t))
    plain.train(), banked.train()
    torch.manual_seed(1)
    a = plain(batch).losses["vtc"]
    torch.manual_seed(1)
    b = banked(batch).losses["vtc"]
    assert not torch.allclose(a, b)          # the bank holds 4 captions against the batch's 3


def test_a_text_tower_that_trains_or_a_model_without_vtc_is_refused(monkeypatch):
    monkeypatch.setattr(CaptionBankSMAUG, "size", 16)
    with pytest.raises(ValueError, match="whole text tower frozen.*1 of its 2 layers"):
        CaptionBankSMAUG(tiny_config(text={"num_layers": 2, "freeze_layers": 1, "max_len": 16}))
    with pytest.raises(ValueError, match="serves VTC"):
        CaptionBankSMAUG(tiny_config(text=FROZEN, objectives={"vtc": 0.0}))
    model = CaptionBankSMAUG(tiny_config(text=FROZEN))
    batch, _ = _captioned_batch(model.cfg)
    del batch["meta"]
    model.train()
    with pytest.raises(ValueError, match="'meta'"):
        model(batch)

