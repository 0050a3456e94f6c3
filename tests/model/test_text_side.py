"""The text side: a random-weight BERT shape, trainable layers at their own rate, and the
shared masked text pass (one text pass and one fusion pass feed VTC, VTM and MLM)."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import ConfigError
from train import cost
from train.config import PretrainConfig
from train.model import SMAUG
from train.trainer import build_optimizer, default_loss


def calls(module: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    module.register_forward_hook(lambda *_: seen.append(1))
    return seen


def test_random_init_builds_a_named_bert_shape_with_the_folders_vocabulary(config, batch_for):
    torch.manual_seed(0)
    cfg = config(text={"init": "random", "arch": "bert-base", "num_layers": 1, "freeze_layers": 0},
                 fusion={"heads": 12})
    model = SMAUG(cfg)
    bert = model.text.bert.config
    assert (bert.hidden_size, bert.num_attention_heads, bert.intermediate_size) == (768, 12, 3072)
    assert model.text.vocab_size == 30522 and model.text.special.mask == 103
    out = model(batch_for(cfg))
    assert set(out.losses) == {"vtc", "vtm", "mlm", "mvm"} and torch.isfinite(out.loss)
    # random means random: not MiniLM's first layer resized, not its MLM head
    pretrained = SMAUG(config(text={"num_layers": 1, "freeze_layers": 0}))
    a = model.text.bert.embeddings.word_embeddings.weight[:5, :8]
    b = pretrained.text.bert.embeddings.word_embeddings.weight[:5, :8]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("text, message", [
    ({"arch": "bert-base"}, "model.text.arch: applies only with text.init: random"),
    ({"init": "random", "arch": "bert-huge"}, "model.text.arch: must be null or one of bert-base, bert-large"),
    ({"init": "zeros"}, "model.text.init: 'zeros' is not one of 'pretrained', 'random'"),
    ({"lr_scale": 0}, "model.text.lr_scale: must be > 0"),
])
def test_bad_text_settings_are_rejected_by_name(config, text, message):
    with pytest.raises(ConfigError, match=message):
        config(text=text)


def test_trainable_text_layers_learn_at_their_own_rate(config):
    torch.manual_seed(0)
    model = SMAUG(config(text={"num_layers": 2, "freeze_layers": 1, "lr_scale": 0.1}))
    optimizer = build_optimizer(model, PretrainConfig(lr=1e-3))
    text_ids = {id(p) for p in model.text.parameters() if p.requires_grad}
    assert text_ids, "the tiny config trains the top text layer"
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & text_ids:
            assert ids <= text_ids and group["lr_scale"] == pytest.approx(0.1)
        else:
            assert group.get("lr_scale", 1.0) == 1.0
    grouped = set().union(*({id(p) for p in g["params"]} for g in optimizer.param_groups))
    assert text_ids <= grouped


@pytest.mark.parametrize("objectives, text_passes, fusion_passes", [
    ({}, (2, 1), (2, 1)),                                   # all four: MLM reads VTM's positives
    ({"vtm": 0.0}, (2, 1), (1, 1)),                         # no VTM: MLM fuses the one text pass
    ({"mlm": 0.0}, (1, 1), (1, 1)),                         # no MLM: the caption is still masked
])
def test_shared_text_pass_runs_the_text_tower_and_fusion_once(config, batch_for, objectives,
                                                            text_passes, fusion_passes):
    counts = {}
    for mode in ("two", "shared"):
        torch.manual_seed(0)
        cfg = config(masking={"text_pass": mode}, objectives=objectives)
        model = SMAUG(cfg).train()
        text, fusion = calls(model.text), calls(model.fusion)
        out = model(batch_for(cfg), generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        assert torch.isfinite(out.loss)
        counts[mode] = (len(text), len(fusion))
    assert (counts["two"][0], counts["shared"][0]) == text_passes
    assert (counts["two"][1], counts["shared"][1]) == fusion_passes


def test_shared_text_pass_costs_fewer_flops_and_feeds_vtc_the_masked_caption(config, batch_for):
    torch.manual_seed(0)
    flops, features = {}, {}
    for mode in ("two", "shared"):
        torch.manual_seed(0)
        cfg = config(masking={"text_pass": mode})
        model = SMAUG(cfg)
        batch = batch_for(cfg)
        flops[mode], _ = cost.count_step_flops(model, batch, default_loss)
        seen = []
        model.text.register_forward_hook(lambda _m, args, _o: seen.append(args[0].clone()))
        model(batch, generator=torch.Generator().manual_seed(1))
        features[mode] = seen[0]
    assert flops["shared"] < flops["two"]
    ids = batch_for(config())["input_ids"]
    width = features["two"].shape[1]
    assert torch.equal(features["two"], ids[:, :width])          # two: VTC/VTM read clean text
    assert not torch.equal(features["shared"], ids[:, :width])   # shared: the masked caption
    # evaluation reads clean text in both forms
    model = SMAUG(config(masking={"text_pass": "shared"}))
    seen = []
    model.text.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    model.encode_text(ids[:, :width], batch_for(config())["attention_mask"][:, :width])
    assert torch.equal(seen[0], ids[:, :width])
