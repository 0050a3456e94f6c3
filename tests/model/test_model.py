import pytest
import torch
from safetensors import safe_open

from pipeline.config import ConfigError, section
from pipeline.text_encoder import default_text_encoder_dir
from train.model import SMAUG, ModelConfig

DENSE = {"masking": {"video_ratio": 0.0}, "sparsify": {"enabled": False}, "objectives": {"mvm": 0.0}}


def _grad_report(model):
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    return missing, frozen_with_grad


@pytest.mark.parametrize("overlay", [{}, DENSE], ids=["smaug", "dense"])
def test_every_trainable_parameter_gets_a_gradient(config, batch_for, overlay):
    torch.manual_seed(0)
    cfg = config(**overlay)
    model = SMAUG(cfg).train()
    out = model(batch_for(cfg), generator=torch.Generator().manual_seed(0))
    expected = {"vtc", "vtm", "mlm", "mvm"} if not overlay else {"vtc", "vtm", "mlm"}
    assert set(out.losses) == expected
    assert torch.isclose(out.loss, sum(out.losses.values()))
    out.loss.backward()
    missing, frozen = _grad_report(model)
    assert missing == [] and frozen == []
    # frozen text prefix: embeddings and the first layer, never a gradient
    bert = model.text.bert
    assert all(not p.requires_grad for p in bert.embeddings.parameters())
    assert all(not p.requires_grad for p in bert.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in bert.encoder.layer[1].parameters())
    assert len(bert.encoder.layer) == 2


def test_stats_count_tokens(config, batch_for):
    cfg = config()
    out = SMAUG(cfg)(batch_for(cfg))
    s = out.stats
    assert s["video_tokens_input"] == 4 * 16
    assert s["video_tokens_visible"] == 16           # 75% masked
    assert s["video_tokens_final"] == 4 + 1          # 16 -> 8 (frames) -> 4 + 1 fused
    assert s["text_tokens"] == 9                     # padding trimmed to the longest caption
    dense = SMAUG(config(**DENSE))(batch_for(cfg)).stats
    assert dense["video_tokens_visible"] == dense["video_tokens_final"] == 64


def test_zero_weight_objectives_are_not_built_or_computed(config, batch_for):
    cfg = config(objectives={"vtc": 1.0, "vtm": 0.0, "mlm": 0.0, "mvm": 0.0})
    model = SMAUG(cfg)
    assert model.fusion is None and model.vtm_head is None
    assert model.mlm_head is None and model.mvm_decoder is None
    out = model(batch_for(cfg))
    assert set(out.losses) == {"vtc"}
    with pytest.raises(RuntimeError, match="fusion"):
        model.fuse(torch.zeros(1, 2, 384), torch.ones(1, 2), torch.zeros(1, 3, 32))


def test_public_encoders_shapes_and_normalisation(tiny_model, config, batch_for):
    cfg = config()
    batch = batch_for(cfg, batch=3)
    model = tiny_model.eval()
    with torch.no_grad():
        tokens, vfeat = model.encode_video(batch["video"])
        hidden, tfeat = model.encode_text(batch["input_ids"], batch["attention_mask"])
        fused = model.fuse(hidden, batch["attention_mask"], tokens)
        score = model.vtm_score(fused)
        masked_tokens, _ = model.encode_video(batch["video"], mask=True)
        dense_tokens, _ = model.encode_video(batch["video"], sparsify=False)
    assert tokens.shape == (3, 1 + 17, 32)           # 64 -> 32 (frames) -> 16 kept + 1 fused
    assert dense_tokens.shape == (3, 65, 32)
    assert masked_tokens.shape == (3, 1 + 5, 32)
    assert vfeat.shape == tfeat.shape == (3, 16)
    assert torch.allclose(vfeat.norm(dim=-1), torch.ones(3)) and torch.allclose(tfeat.norm(dim=-1), torch.ones(3))
    assert hidden.shape == (3, 12, 384) and fused.shape == (3, 12, 384)
    assert score.shape == (3,)


def test_tube_hog_tubelet_variant_trains(config, batch_for):
    cfg = config(masking={"video_mode": "tube", "video_ratio": 0.9, "text_ratio": 0.75},
                 mvm={"target": "hog"}, video={"tubelet": 2})
    model = SMAUG(cfg)
    out = model(batch_for(cfg))
    out.loss.backward()
    assert out.loss.isfinite()
    assert out.stats["video_tokens_visible"] == 2 * 1    # 2 slots x int(16 * 0.1) patches


def test_single_frame_config(config, batch_for):
    cfg = config(video={"num_frames": 1}, masking={"video_ratio": 0.0},
                 sparsify={"enabled": False}, objectives={"mvm": 0.0})
    out = SMAUG(cfg)(batch_for(cfg))
    assert out.stats["video_tokens_final"] == 16


def test_text_longer_than_max_len_is_rejected(tiny_model):
    ids = torch.full((1, 20), 1000)
    with pytest.raises(ValueError, match="max_len"):
        tiny_model.encode_text(ids, torch.ones_like(ids))


@pytest.mark.parametrize("raw, name", [
    ({"masking": {"video_ratio": 1.5}}, "model.masking.video_ratio"),
    ({"masking": {"video_mode": "blocks"}}, "model.masking.video_mode"),
    ({"video": {"depth": "six"}}, "model.video.depth"),
    ({"video": {"image_size": 100}}, "model.video.image_size"),
    ({"video": {"heads": 5}}, "model.video.heads"),
    ({"sparsify": {"spatial_keep": 0}}, "model.sparsify.spatial_keep"),
    ({"sparsify": {"layers": [7]}}, "model.sparsify.layers"),
    ({"objectives": {"mlm": -1}}, "model.objectives.mlm"),
    ({"objectives": {"vtc": 0, "vtm": 0, "mlm": 0, "mvm": 0}}, "model.objectives.vtc"),
    ({"masking": {"video_ratio": 0.0}}, "model.objectives.mvm"),
    ({"mvm": {"target": "flow"}}, "model.mvm.target"),
    ({"text": {"freeze_layers": 3, "num_layers": 2}}, "model.text.freeze_layers"),
    ({"fusion": {"layerz": 2}}, "model.fusion.layerz"),
    ({"text": {"pooling": "max"}}, "model.text.pooling"),
])
def test_bad_config_value_is_rejected_by_name(raw, name):
    with pytest.raises(ConfigError) as err:
        section({"model": raw}, ModelConfig, "model")
    assert str(err.value).startswith(name + ":"), str(err.value)


def test_mean_pooled_text_feature_ignores_padding(config):
    torch.manual_seed(0)
    model = SMAUG(config(text={"pooling": "mean"})).eval()
    ids = torch.tensor([[101, 2000, 3000, 4000, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        _, short = model.encode_text(ids, mask)
        padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=ids.dtype)], dim=1)
        padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=mask.dtype)], dim=1)
        hidden, long = model.encode_text(padded_ids, padded_mask)
        # the feature is the projected mean of the real tokens' hidden states, nothing else
        direct = torch.nn.functional.normalize(model.text_proj(hidden[:, :5].mean(1)), dim=-1)
    assert torch.allclose(short, long, atol=1e-5)
    assert torch.allclose(long, direct, atol=1e-5)
    # and it is not the [CLS] feature
    assert not torch.allclose(long, torch.nn.functional.normalize(model.text_proj(hidden[:, 0]), dim=-1), atol=1e-3)


def test_missing_text_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="model.text.path"):
        SMAUG(section({"model": {"text": {"path": str(tmp_path / "nope")}}}, ModelConfig, "model"))


def test_loads_offline_minilm_weights(tiny_model):
    folder = default_text_encoder_dir()
    bert = tiny_model.text.bert
    assert bert.config.hidden_size == 384 and tiny_model.text.vocab_size == 30522
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        for key in ["embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight",
                    "encoder.layer.0.attention.self.query.bias"]:
            assert torch.equal(bert.state_dict()[key], f.get_tensor(key)), key
    special = tiny_model.text.special
    assert (special.cls, special.sep, special.pad, special.mask) == (101, 102, 0, 103)


def test_plot_sparsification_writes_png(tiny_model, config, batch_for, tmp_path):
    from train.model.visualize import plot_sparsification

    batch = batch_for(config(), batch=3)
    path = plot_sparsification(tiny_model, batch, tmp_path / "plots" / "sparsification.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_bf16_autocast_step(config, batch_for):
    cfg = config()
    model = SMAUG(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch_for(cfg))
    out.loss.backward()
    assert out.loss.isfinite() and set(out.losses) == {"vtc", "vtm", "mlm", "mvm"}


def test_a_few_steps_fit_a_fixed_batch(config, batch_for):
    torch.manual_seed(0)
    cfg = config()
    model = SMAUG(cfg).train()
    batch = batch_for(cfg, batch=4)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    history = []
    for step in range(8):
        out = model(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append({k: v.item() for k, v in out.losses.items()})
    first = sum(sum(h.values()) for h in history[:2])
    last = sum(sum(h.values()) for h in history[-2:])
    assert last < 0.9 * first, history
    assert history[-1]["mlm"] < history[0]["mlm"] and history[-1]["mvm"] < history[0]["mvm"]
