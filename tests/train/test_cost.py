"""FLOP counting: attention is counted on the CPU, at the analytic cost, in our layers and BERT's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.config import deep_merge, load_params, load_recipe, section
from train import cost
from train.model import ModelConfig
from train.model.layers import Attention


def count(fn) -> int:
    counter = cost.flop_counter_mode()
    with counter:
        fn()
    return counter.get_total_flops()


def test_sdpa_on_the_cpu_is_counted_at_the_analytic_cost():
    q = torch.randn(2, 3, 10, 8, requires_grad=True)
    k = torch.randn(2, 3, 14, 8, requires_grad=True)
    v = torch.randn(2, 3, 14, 8, requires_grad=True)
    forward_only = count(lambda: F.scaled_dot_product_attention(q.detach(), k.detach(), v.detach()))
    assert forward_only == cost.attention_flops(2, 3, 10, 14, 8, backward=False)
    both = count(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert both == cost.attention_flops(2, 3, 10, 14, 8)
    assert cost.attention_counted("cpu")


def test_a_plain_counter_misses_cpu_attention_which_is_why_ours_exists():
    # If torch starts counting the CPU kernel itself, ATTENTION_FLOPS can go; until then the
    # plain counter reports 0 for the attention maps.
    from torch.utils.flop_counter import FlopCounterMode

    q = torch.randn(1, 2, 6, 4)
    plain = FlopCounterMode(display=False)
    with plain:
        F.scaled_dot_product_attention(q, q, q)
    assert plain.get_total_flops() == 0


def test_our_attention_layer_counts_as_its_math_form():
    torch.manual_seed(0)
    layer = Attention(32, heads=4)
    x = torch.randn(2, 9, 32)

    def math_form():   # the same layer with attention written as matmuls (always counted)
        q, k, v = (layer._split(t) for t in layer.qkv(x).chunk(3, dim=-1))
        a = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v
        return layer.proj(a.transpose(1, 2).reshape(2, 9, 32))

    with torch.no_grad():
        assert count(lambda: layer(x)) == count(math_form)
        assert torch.allclose(layer(x)[0], math_form(), atol=1e-5)


def test_bert_attention_is_counted():
    from tests.model.conftest import make_batch, tiny_config
    from train.model import SMAUG

    torch.manual_seed(0)
    cfg = tiny_config(objectives={"vtc": 1.0, "vtm": 0.0, "mlm": 0.0, "mvm": 0.0})
    model = SMAUG(cfg)
    batch = make_batch(cfg)
    ids, mask = batch["input_ids"][:, :9], batch["attention_mask"][:, :9]
    with torch.no_grad():
        total = count(lambda: model.text(ids, mask))
    bert = model.text.bert.config
    layers = len(model.text.bert.encoder.layer)
    head_dim = bert.hidden_size // bert.num_attention_heads
    attention = layers * cost.attention_flops(4, bert.num_attention_heads, 9, 9, head_dim, backward=False)
    linear = layers * 2 * 4 * 9 * (4 * bert.hidden_size**2 + 2 * bert.hidden_size * bert.intermediate_size)
    assert total == attention + linear


def test_the_paper_preset_is_bert_base_split_into_text_and_fusion():
    params = load_params()
    assert params["cost"]["preset"] == "paper"
    cfg = section(deep_merge(params, load_recipe("paper")), ModelConfig, "model")
    assert (cfg.video.width, cfg.video.depth, cfg.video.image_size, cfg.video.patch_size) == (768, 12, 224, 16)
    assert (cfg.text.init, cfg.text.arch, cfg.text.num_layers, cfg.text.freeze_layers) == ("random", "bert-base", 6, 0)
    assert (cfg.fusion.layers, cfg.fusion.heads) == (6, 12)
