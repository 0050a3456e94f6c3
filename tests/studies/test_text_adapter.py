"""The text adapter (studies/text_adapter): it starts as the identity, ignores padding, reads the
order of the frozen tower's token states (which mean pooling alone cannot), and learns while
MiniLM stays frozen."""

from __future__ import annotations

import pytest
import torch

from studies.levers import main, study_model
from studies.text_adapter.model import TextAdapter, TextAdapterSMAUG
from tests.model.conftest import make_batch, tiny_config


def _wake(adapter: TextAdapter) -> TextAdapter:
    """Give the zero-initialised output projections random weights, as training would."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in adapter.layers:
            for last in (layer.attn.proj, layer.mlp[-1]):
                last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.05)
    return adapter


def test_at_initialisation_the_model_is_the_default_model():
    cfg = tiny_config(text={"pooling": "mean"})
    torch.manual_seed(0)
    plain = study_model()(cfg).eval()
    adapted = study_model(text_adapter=2)(cfg).eval()
    assert isinstance(adapted, TextAdapterSMAUG) and len(adapted.text_adapter.layers) == 2
    report = adapted.load_state_dict(plain.state_dict(), strict=False)
    assert report.unexpected_keys == [] and all(k.startswith("text_adapter.") for k in report.missing_keys)
    batch = make_batch(cfg)
    with torch.no_grad():
        before = plain.encode_text(batch["input_ids"], batch["attention_mask"])[1]
        same = adapted.encode_text(batch["input_ids"], batch["attention_mask"])[1]
        _wake(adapted.text_adapter)
        moved = adapted.encode_text(batch["input_ids"], batch["attention_mask"])[1]
    assert torch.equal(before, same)
    assert (before - moved).abs().max() > 1e-3


def test_padding_does_not_reach_the_real_tokens():
    adapter = _wake(TextAdapter(dim=16, max_len=8, layers=1, heads=2, mlp_ratio=2.0)).eval()
    hidden = torch.randn(1, 8, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    other = hidden.clone()
    other[:, 5:] = torch.randn(1, 3, 16) * 10
    with torch.no_grad():
        a, b = adapter(hidden, mask), adapter(other, mask)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)


def test_the_adapter_reads_token_order_that_mean_pooling_does_not():
    adapter = _wake(TextAdapter(dim=16, max_len=8, layers=1, heads=2, mlp_ratio=2.0)).eval()
    hidden = torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.long)
    swapped = hidden[:, [0, 3, 4, 1, 2, 5]]          # two "events" trade places
    assert torch.allclose(hidden.mean(1), swapped.mean(1), atol=1e-6)   # invisible to mean pooling
    with torch.no_grad():
        gap = (adapter(hidden, mask).mean(1) - adapter(swapped, mask).mean(1)).abs().max()
    assert gap > 1e-3


def test_vtc_trains_the_adapter_and_leaves_the_frozen_tower_alone():
    cfg = tiny_config(text={"num_layers": 2, "freeze_layers": 2, "max_len": 16})
    torch.manual_seed(0)
    model = study_model(text_adapter=1)(cfg).train()
    out = model(make_batch(cfg))
    out.loss.backward()
    layer = model.text_adapter.layers[0]
    assert layer.attn.proj.weight.grad.abs().sum() > 0 and layer.mlp[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.text.parameters())


def test_a_negative_layer_count_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        main(["--text-adapter", "-1", "--", "--recipe", "smaug"])
    assert "--text-adapter must be >= 0, got -1" in capsys.readouterr().err


def test_the_adapter_learns_at_its_own_rate():
    from train.trainer import TrainerConfig, build_optimizer

    cfg = tiny_config()
    model = study_model(text_adapter=1, text_adapter_lr_scale=0.1)(cfg)
    adapter = {id(p) for p in model.text_adapter.parameters()}
    groups = build_optimizer(model, TrainerConfig()).param_groups
    scaled = [g for g in groups if any(id(p) in adapter for p in g["params"])]
    assert scaled and all(g["lr_scale"] == 0.1 for g in scaled)
    assert sum(len(g["params"]) for g in scaled) == len(adapter)
    assert all(g.get("lr_scale", 1.0) == 1.0 for g in groups if g not in scaled)


def test_a_rate_of_zero_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        main(["--text-adapter", "1", "--text-adapter-lr-scale", "0", "--", "--recipe", "smaug"])
    assert "--text-adapter-lr-scale must be > 0, got 0.0" in capsys.readouterr().err
