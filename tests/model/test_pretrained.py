"""Pretrained video-tower initialisation: each supported layout, loaded into ``VideoEncoder``,
reproduces the reference implementation's features (transformers models with random weights,
saved to disk; timm and OpenAI layouts are written from the same weights under their names)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline.config import ConfigError, section
from train.model import ModelConfig
from train.model.config import VideoConfig
from train.model.patches import patchify
from train.model.pretrained import init_video_encoder, separable_fit
from train.model.video_encoder import VideoEncoder

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

ATOL = 1e-4
SIZES = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
             image_size=32, patch_size=8)
TOWER = dict(width=64, depth=2, heads=4, mlp_ratio=4.0, image_size=32, patch_size=8)


def encoder(**video) -> VideoEncoder:
    """The project's tower at the reference sizes, masking and sparsification off."""
    return VideoEncoder(VideoConfig(**{**TOWER, **video}), sparsify=None).eval()


def saved_weights(folder) -> dict[str, torch.Tensor]:
    """The tensors as save_pretrained wrote them (the on-disk names, not the in-memory ones)."""
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf_vit")
    model = transformers.ViTModel(transformers.ViTConfig(**SIZES), add_pooling_layer=False).eval()
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory):
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("hf_clip")
    model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**SIZES)).eval()
    model.save_pretrained(folder)
    return model, folder


CLIP_TOWER = dict(act="quick_gelu", ln_pre=True, norm_eps=1e-5)


def clip_tokens(vision, image: torch.Tensor) -> torch.Tensor:
    """CLIP's tokens after post_layernorm (its last_hidden_state is taken before it)."""
    out = vision(pixel_values=image)
    post = getattr(vision, "post_layernorm", None) or vision.vision_model.post_layernorm
    return post(out.last_hidden_state)


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("frames,tubelet", [(1, 1), (2, 2)])
def test_hf_vit_folder_reproduces_vitmodel(hf_vit, frames, tubelet):
    """One frame gives ViTModel's tokens; so does a still 2-frame clip with tubelet 2 (the
    inflated kernel). More temporal slots are not an image any more: joint space-time
    attention weighs the CLS token against every frame's patches."""
    ref, folder = hf_vit
    enc = encoder(norm_eps=1e-12, num_frames=frames, tubelet=tubelet, init=str(folder))
    report = init_video_encoder(enc, enc.cfg)
    assert report.format == "hf_vit" and report.new == []
    assert report.ignored == []
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = ref(pixel_values=image).last_hidden_state                     # [2, 17, 64]
        got = enc(image[:, None].expand(-1, frames, -1, -1, -1), sparsify=False).tokens
    torch.testing.assert_close(got[:, :17], want, atol=ATOL, rtol=0)
    if tubelet == 2:
        assert any("inflated" in s for s in report.interpolated)


def test_timm_state_dict_reproduces_vit(tmp_path):
    torch.manual_seed(2)
    folder = tmp_path / "hf"
    ref = transformers.ViTModel(transformers.ViTConfig(**SIZES, layer_norm_eps=1e-6),
                                add_pooling_layer=False).eval()
    ref.save_pretrained(folder)
    path = tmp_path / "deit_tiny.pth"
    state = timm_layout(saved_weights(folder))
    state["head.weight"] = torch.randn(10, 64)                               # classifier: ignored
    torch.save({"model": state}, path)
    enc = encoder()                                                          # timm's eps 1e-6
    report = init_video_encoder(enc, enc.cfg, path)
    assert report.format == "timm_vit" and report.new == [] and report.ignored == ["head.weight"]
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = ref(pixel_values=image).last_hidden_state
        got = enc(image[:, None], sparsify=False).tokens
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_hf_clip_folder_reproduces_clipvisionmodel(hf_clip):
    ref, folder = hf_clip
    enc = encoder(**CLIP_TOWER, init=str(folder))
    report = init_video_encoder(enc, enc.cfg)
    assert report.format == "hf_clip" and report.new == []
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, pooled = clip_tokens(ref, image), ref(pixel_values=image).pooler_output
        got = enc(image[:, None], sparsify=False).tokens
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(got[:, 0], pooled, atol=ATOL, rtol=0)


def test_hf_clipmodel_folder_loads_its_vision_tower(tmp_path):
    """A whole CLIPModel (model_type clip): vision_model.* is loaded, the text tower set aside."""
    torch.manual_seed(5)
    text = transformers.CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, vocab_size=100,
                                       max_position_embeddings=16)
    ref = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=text.to_dict(), vision_config=SIZES, projection_dim=16)).eval()
    ref.save_pretrained(tmp_path)
    enc = encoder(**CLIP_TOWER, init=str(tmp_path))
    report = init_video_encoder(enc, enc.cfg)
    assert report.format == "hf_clip" and report.new == []
    assert any(k.startswith("text_model.") for k in report.ignored)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = clip_tokens(ref.vision_model, image)
        got = enc(image[:, None], sparsify=False).tokens
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("prefix", ["visual.", ""])
def test_openai_clip_state_dict_reproduces_clip(hf_clip, tmp_path, prefix):
    ref, folder = hf_clip
    state = {prefix + k: v for k, v in openai_layout(saved_weights(folder)).items()}
    if prefix:  # a whole CLIP checkpoint: the text tower is set aside
        state.update({"transformer.resblocks.0.ln_1.weight": torch.ones(8),
                      "logit_scale": torch.tensor(4.6)})
    path = tmp_path / "clip.safetensors"
    save_file(state, str(path))
    enc = encoder(**CLIP_TOWER)
    report = init_video_encoder(enc, enc.cfg, path)
    assert report.format == "openai_clip" and report.new == []
    assert prefix + "proj" in report.ignored
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = clip_tokens(ref, image)
        got = enc(image[:, None], sparsify=False).tokens
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def videomae(folder, mean_pooling: bool = False):
    torch.manual_seed(3)
    ref = transformers.VideoMAEModel(transformers.VideoMAEConfig(
        **SIZES, num_frames=4, tubelet_size=2, use_mean_pooling=mean_pooling)).eval()
    ref.save_pretrained(folder)
    return ref


def tokens_without_cls(enc: VideoEncoder, video: torch.Tensor) -> torch.Tensor:
    """The tower's forward pass minus the CLS token VideoMAE does not have."""
    cfg = enc.cfg
    grid = (video.shape[1] // cfg.tubelet, video.shape[3] // cfg.patch_size, video.shape[4] // cfg.patch_size)
    x = enc.patch_embed(patchify(video, cfg.patch_size, cfg.tubelet)) + enc.pos(*grid)
    for block in enc.blocks:
        x, _ = block(x)
    return enc.norm(x)


@pytest.mark.parametrize("mean_pooling", [False, True])
def test_hf_videomae_folder_reproduces_videomaemodel(tmp_path, mean_pooling):
    """With ``pos_embed: sinusoid`` everything VideoMAE has is reproduced exactly; it has no
    CLS token, so the patch tokens are compared with the tower run without one."""
    ref = videomae(tmp_path, mean_pooling)
    enc = encoder(norm_eps=1e-12, num_frames=4, tubelet=2, pos_embed="sinusoid", init=str(tmp_path))
    report = init_video_encoder(enc, enc.cfg)
    assert report.format == "hf_videomae"
    assert report.new == (["cls_token", "norm.bias", "norm.weight"] if mean_pooling else ["cls_token"])
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        want = ref(pixel_values=video).last_hidden_state                     # [2, 32, 64]
        if mean_pooling:  # no final norm in VideoMAE: the tower's fresh one is affine-free
            want = torch.nn.functional.layer_norm(want, (64,), eps=1e-12)
        torch.testing.assert_close(tokens_without_cls(enc, video), want, atol=ATOL, rtol=0)
        assert enc(video, sparsify=False).tokens.shape == (2, 1 + 32, 64)   # with its new CLS


def test_videomae_into_separable_positions_is_exact_but_for_the_fit(tmp_path):
    """The default learned separable positions take the least-squares fit of VideoMAE's
    sinusoid (its error is reported); given the same positions, the rest is exact."""
    ref = videomae(tmp_path)
    enc = encoder(norm_eps=1e-12, num_frames=4, tubelet=2, init=str(tmp_path))
    report = init_video_encoder(enc, enc.cfg)
    assert report.new == ["cls_token"]
    assert any("relative error" in s for s in report.differences)
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        ref.embeddings.position_embeddings = enc.pos(2, 4, 4)
        want = ref(pixel_values=video).last_hidden_state
        torch.testing.assert_close(tokens_without_cls(enc, video), want, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- the pieces


def test_separable_fit_is_exact_on_a_separable_table():
    temporal, spatial = torch.randn(3, 1, 5), torch.randn(1, 7, 5)
    s, t, residual = separable_fit(temporal + spatial)
    torch.testing.assert_close(t[:, None] + s[None], (temporal + spatial), atol=1e-6, rtol=0)
    assert residual < 1e-6


def test_position_grid_is_resized_for_a_larger_input(hf_vit):
    _, folder = hf_vit
    enc = encoder(norm_eps=1e-12, image_size=48, num_frames=4)
    report = init_video_encoder(enc, enc.cfg, folder)
    assert report.interpolated == ["spatial positions 4x4 -> 6x6 (bicubic)"]
    assert enc.pos.spatial.shape == (1, 36, 64)
    assert torch.count_nonzero(enc.pos.temporal) == 0


def test_mismatches_name_the_key(hf_vit, hf_clip):
    with pytest.raises(ConfigError, match="model.video.init_format"):
        section({"model": {"video": {"init_format": "timm"}}}, ModelConfig, "model")
    with pytest.raises(ConfigError, match="init_format"):
        VideoConfig(init_format="timm")
    with pytest.raises(ConfigError, match="model.video.width"):
        init_video_encoder(encoder(width=32, heads=2), encoder(width=32, heads=2).cfg, hf_vit[1])
    clip = encoder(ln_pre=True)
    with pytest.raises(ConfigError, match="model.video.act"):
        init_video_encoder(clip, clip.cfg, hf_clip[1])
    plain = encoder(act="quick_gelu")
    with pytest.raises(ConfigError, match="model.video.ln_pre"):
        init_video_encoder(plain, plain.cfg, hf_clip[1])
    with pytest.raises(ConfigError, match="model.video.init"):
        init_video_encoder(plain, plain.cfg, hf_vit[1] / "missing.pth")


def test_fewer_blocks_take_the_first_ones(hf_vit):
    enc = encoder(norm_eps=1e-12, depth=1)
    report = init_video_encoder(enc, enc.cfg, hf_vit[1])
    assert report.new == [] and report.ignored == ["blocks 1..1 (model.video.depth=1)"]


def test_deit_distillation_token_is_set_aside(tmp_path, hf_vit):
    state = timm_layout(saved_weights(hf_vit[1]))
    state["dist_token"] = torch.randn(1, 1, 64)
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :1], torch.randn(1, 1, 64),
                                    state["pos_embed"][:, 1:]], dim=1)        # [1, 2 + 16, 64]
    torch.save(state, tmp_path / "deit.pth")
    enc = encoder(norm_eps=1e-12)
    report = init_video_encoder(enc, enc.cfg, tmp_path / "deit.pth")
    assert report.ignored == ["dist_token"]
    torch.testing.assert_close(enc.pos.spatial[0], state["pos_embed"][0, 2:])


def test_a_pickle_with_more_than_tensors_is_refused(tmp_path, hf_vit):
    import argparse

    state = timm_layout(saved_weights(hf_vit[1]))
    torch.save({"model": state, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "mae.pth")
    enc = encoder(norm_eps=1e-12)
    with pytest.raises(ConfigError, match="model.video.init: .* more than tensors"):
        init_video_encoder(enc, enc.cfg, tmp_path / "mae.pth")


def test_smaug_starts_from_model_video_init(tmp_path, config):
    torch.manual_seed(4)
    ref = transformers.ViTModel(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, layer_norm_eps=1e-6), add_pooling_layer=False)
    ref.save_pretrained(tmp_path)
    from train.model import SMAUG

    model = SMAUG(config(video={"init": str(tmp_path)}))
    assert model.video_init_report is not None and model.video_init_report.new == []
    torch.testing.assert_close(model.video.norm.weight, saved_weights(tmp_path)["layernorm.weight"])
    untouched = SMAUG(config(video={"init": str(tmp_path / "gone")}), video_init=False)
    assert untouched.video_init_report is None


def test_a_checkpoint_of_an_initialised_run_loads_without_the_init_file(tmp_path, config):
    """Weights come from the SMAUG checkpoint, so the pretrained file may be gone by then."""
    import shutil

    from pipeline.config import to_dict
    from train import checkpoint as ckpt
    from train.model import SMAUG

    init = tmp_path / "vit"
    transformers.ViTModel(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, layer_norm_eps=1e-6), add_pooling_layer=False).save_pretrained(init)
    cfg = config(video={"init": str(init)})
    model = SMAUG(cfg)
    ckpt.save_checkpoint(tmp_path / "run", model, step=1, state={"model_config": to_dict(cfg)})
    shutil.rmtree(init)
    loaded, _ = ckpt.load_model(tmp_path / "run")
    assert loaded.cfg.video.init == str(init)
    torch.testing.assert_close(loaded.video.patch_embed.weight, model.video.patch_embed.weight)


# ----------------------------------------------------------------------------- layouts


def timm_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ViT tensors under timm's names (qkv fused)."""
    out = {"cls_token": hf["embeddings.cls_token"], "pos_embed": hf["embeddings.position_embeddings"],
           "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": hf["layernorm.weight"], "norm.bias": hf["layernorm.bias"]}
    for i in range(SIZES["num_hidden_layers"]):
        h, t = f"encoder.layer.{i}.", f"blocks.{i}."
        att = h + "attention.attention."
        for p in ("weight", "bias"):
            out[t + "attn.qkv." + p] = torch.cat([hf[att + n + "." + p] for n in ("query", "key", "value")])
            out[t + "norm1." + p] = hf[h + "layernorm_before." + p]
            out[t + "attn.proj." + p] = hf[h + "attention.output.dense." + p]
            out[t + "norm2." + p] = hf[h + "layernorm_after." + p]
            out[t + "mlp.fc1." + p] = hf[h + "intermediate.dense." + p]
            out[t + "mlp.fc2." + p] = hf[h + "output.dense." + p]
    return out


def openai_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF CLIP vision tensors under OpenAI's names (in_proj fused, a visual projection added)."""
    v = "vision_model." if "vision_model.embeddings.class_embedding" in hf else ""
    out = {"conv1.weight": hf[v + "embeddings.patch_embedding.weight"],
           "class_embedding": hf[v + "embeddings.class_embedding"],
           "positional_embedding": hf[v + "embeddings.position_embedding.weight"],
           "proj": torch.randn(64, 16)}
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = hf[f"{v}{theirs}.{p}"]
    for i in range(SIZES["num_hidden_layers"]):
        h, t = f"{v}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            qkv = torch.cat([hf[f"{h}self_attn.{n}_proj.{p}"] for n in "qkv"])
            out[t + ("attn.in_proj_weight" if p == "weight" else "attn.in_proj_bias")] = qkv
            out[t + "attn.out_proj." + p] = hf[h + "self_attn.out_proj." + p]
            out[t + "ln_1." + p] = hf[h + "layer_norm1." + p]
            out[t + "ln_2." + p] = hf[h + "layer_norm2." + p]
            out[t + "mlp.c_fc." + p] = hf[h + "mlp.fc1." + p]
            out[t + "mlp.c_proj." + p] = hf[h + "mlp.fc2." + p]
    return out
