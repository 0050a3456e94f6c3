"""Starting the video tower from pretrained image or video ViT weights on local disk.

How to start from CLIP, ImageNet ViT or VideoMAE weights: put the checkpoint on disk and
point ``model.video.init`` at it, e.g. ``python -m train.pretrain --recipe vit-b16
model.video.init=/ckpt/vit-base-patch16-224 model.video.norm_eps=1e-12``. A Hugging Face folder
(``config.json`` + weights of a ``ViTModel``, ``CLIPVisionModel`` / ``CLIPModel`` or
``VideoMAEModel``) is recognised by its ``model_type``; a single ``.safetensors`` / ``.pth`` /
``.bin`` state dict by its key names (timm ViT / DeiT, or an OpenAI / open_clip visual tower,
with or without the ``visual.`` prefix); ``model.video.init_format`` names the layout when
guessing is not wanted. The tower must have the checkpoint's ``width``, ``heads``,
``mlp_ratio`` and ``patch_size`` (ViT-B/16: the ``vit-b16`` recipe); a smaller ``depth`` takes
the first blocks; ``image_size`` and ``num_frames`` are free (position embeddings are resized).
To run a checkpoint as it was trained, also set: CLIP ``act=quick_gelu ln_pre=true
norm_eps=1e-5`` (open_clip's LAION towers use ``act=gelu``); HF ViT ``norm_eps=1e-12``; timm
keeps the default ``1e-6``; VideoMAE ``tubelet=2 norm_eps=1e-12 pos_embed=sinusoid``. A wrong
``act`` or ``ln_pre`` is refused with the key to set; everything else that differs is reported.
The log (and ``SMAUG.video_init_report``) says which tensors were loaded, which stay new,
which checkpoint keys were ignored, what was interpolated and where the architectures differ.

What is converted, and why:

* patch embedding: a Conv2d ``[D, 3, P, P]`` (or VideoMAE's Conv3d ``[D, 3, 2, P, P]``) becomes
  the ``nn.Linear`` over :func:`~train.model.patches.patchify`'s ``(time, row, col, channel)``
  flattening; with ``tubelet: 2`` an image kernel is inflated I3D-style (copied to both frames,
  divided by 2, so a still clip embeds exactly as the image did); a missing bias is zero;
* position embeddings: the source's CLS position is folded into ``cls_token`` (ours has no CLS
  position); its 2-D patch grid is resized bicubically (as timm does) to this model's grid;
  image models have no temporal embedding, so ours starts at zero. VideoMAE's fixed 1-D
  sinusoid over the flattened ``t*H*W + s`` index is not a sum of a spatial and a temporal
  term: ``pos_embed: sinusoid`` uses the same table; the default learned separable embedding
  starts from its least-squares fit (spatial = mean over time, temporal = mean over space
  minus the overall mean), whose relative error the report gives (about 0.65 for ViT-B);
* attention: separate q / k / v projections are fused into ``qkv``; VideoMAE's missing key
  bias is zero;
* VideoMAE has no CLS token, so ours stays new (every token attends to it, so features differ
  from VideoMAE's until it is trained); a missing final LayerNorm (VideoMAE with mean pooling)
  stays new; classifier heads, poolers, CLIP's projection and text tower are ignored.

With more than one temporal slot, joint space-time attention makes a still clip's features
differ from the image model's (the CLS token is weighed against every frame's patches).
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.config import ConfigError

from .config import VideoConfig
from .patches import sinusoid_table

log = logging.getLogger(__name__)

FORMATS = ("hf_vit", "hf_clip", "hf_videomae", "timm_vit", "openai_clip")
HF_MODEL_TYPES = {"vit": "hf_vit", "clip": "hf_clip", "clip_vision_model": "hf_clip",
                  "videomae": "hf_videomae"}


@dataclass
class InitReport:
    """What :func:`init_video_encoder` did; ``summary()`` is what gets logged."""

    path: str
    format: str
    loaded: list[str] = field(default_factory=list)       # encoder tensors filled from the file
    new: list[str] = field(default_factory=list)          # encoder tensors left as initialised
    ignored: list[str] = field(default_factory=list)      # checkpoint keys not used
    interpolated: list[str] = field(default_factory=list)  # resizes / inflations done
    differences: list[str] = field(default_factory=list)  # where the architectures differ

    def summary(self) -> str:
        lines = [f"video tower initialised from {self.path} ({self.format}): "
                 f"{len(self.loaded)} tensors loaded, {len(self.new)} new, "
                 f"{len(self.ignored)} checkpoint keys ignored"]
        if self.new:
            lines.append("  new: " + ", ".join(self.new))
        if self.ignored:
            lines.append("  ignored: " + _abbreviate(self.ignored))
        lines += [f"  interpolated: {s}" for s in self.interpolated]
        lines += [f"  differs: {s}" for s in self.differences]
        return "\n".join(lines)


@dataclass
class Converted:
    """A checkpoint in one neutral layout, before it is fitted to this model's sizes."""

    tensors: dict[str, torch.Tensor]   # encoder names (blocks.i.*, norm.*, ln_pre.*)
    patch_weight: torch.Tensor         # conv kernel [D, C, P, P] or [D, C, t, P, P]
    patch_bias: torch.Tensor | None
    cls: torch.Tensor | None           # [D], its position embedding already added
    pos_grid: torch.Tensor | None      # [g, g, D] spatial position embedding
    pos_time: torch.Tensor | None      # [T', D] temporal position embedding
    ignored: list[str]
    hf_config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pos_sinusoid: tuple[int, int] | None = None  # (T', g): VideoMAE's fixed table on that grid


# ----------------------------------------------------------------------------- entry point


def init_video_encoder(encoder, cfg: VideoConfig, path: str | Path | None = None,
                       fmt: str | None = None) -> InitReport:
    """Copy the weights at ``path`` (default ``cfg.init``) into a ``VideoEncoder``; log and
    return the :class:`InitReport`. Raises ``ConfigError`` naming the ``model.video`` key
    that does not match the checkpoint."""
    path = Path(path if path is not None else cfg.init)
    fmt = fmt or cfg.init_format
    if not path.exists():
        raise ConfigError(f"model.video.init: {path} does not exist")
    state, hf_config = read_checkpoint(path)
    if fmt == "auto":
        fmt = detect_format(path, state, hf_config)
    converted = CONVERTERS[fmt](state, hf_config)
    report = InitReport(str(path), fmt, ignored=sorted(converted.ignored),
                        differences=list(converted.notes))
    _check_architecture(cfg, fmt, converted, report)
    target = _fit(encoder, cfg, converted, report)
    own = encoder.state_dict()
    unknown = sorted(set(target) - set(own))
    if unknown:
        raise ConfigError(f"model.video.init: {path} has {_abbreviate(unknown)}, which this "
                          f"tower lacks")
    for name, value in target.items():
        if own[name].shape != value.shape:
            raise ConfigError(f"model.video: {name} is {tuple(own[name].shape)} here but "
                              f"{tuple(value.shape)} in {path} (width / mlp_ratio / patch_size?)")
    encoder.load_state_dict(target, strict=False)
    report.loaded = sorted(target)
    report.new = sorted(set(own) - set(target))
    log.info(report.summary())
    return report


# ----------------------------------------------------------------------------- reading


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """-> (state dict, HF config.json or {}). Pickles are read with ``weights_only=True``."""
    if path.is_dir():
        hf_config = _hf_config(path) if (path / "config.json").exists() else {}
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")) \
            or sorted(path.glob("*.pth"))
        if not files:
            raise ConfigError(f"model.video.init: no .safetensors, .bin or .pth weights in {path}")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(_read_state_file(f))
        return state, hf_config
    return _read_state_file(path), {}


def _hf_config(folder: Path) -> dict:
    """config.json with transformers' defaults filled in (saved configs omit default values)."""
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type not in HF_MODEL_TYPES:
        return {"model_type": model_type}
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(str(folder)).to_dict()


def _read_state_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses arbitrary objects (a pickle can run code): e.g. MAE / DeiT
        # training checkpoints also hold their argparse Namespace
        raise ConfigError(
            f"model.video.init: {path} holds more than tensors ({str(err).splitlines()[0]}); "
            "save just the weights from a trusted copy: "
            "torch.save(torch.load(f, weights_only=False)['model'], 'weights.pth')"
        ) from None
    for wrapper in ("state_dict", "model", "module"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ConfigError(f"model.video.init: {path} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def detect_format(path: Path, state: dict, hf_config: dict) -> str:
    model_type = hf_config.get("model_type")
    if model_type is not None:
        if model_type not in HF_MODEL_TYPES:
            raise ConfigError(f"model.video.init_format: {path} is a {model_type!r} model; "
                              f"auto knows {', '.join(HF_MODEL_TYPES)}")
        return HF_MODEL_TYPES[model_type]
    keys = set(state)
    if any(k.endswith("conv1.weight") for k in keys) and \
            any(k.endswith("class_embedding") for k in keys):
        return "openai_clip"
    if any(k.endswith("patch_embed.proj.weight") for k in keys) and \
            any(re.search(r"blocks\.0\.attn\.qkv\.weight$", k) for k in keys):
        return "timm_vit"
    raise ConfigError(f"model.video.init_format: cannot tell the layout of {path} from its keys "
                      f"(e.g. {sorted(keys)[:3]}); set one of {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- converters


def _strip_prefix(state: dict, anchor: str) -> tuple[dict, list[str], str]:
    """Keep the keys under the prefix that precedes ``anchor`` (``vit.``, ``visual.`` ...);
    -> (those keys without it, the other keys, the prefix)."""
    hit = next((k for k in state if k.endswith(anchor)), None)
    if hit is None:
        raise ConfigError(f"model.video.init_format: no {anchor} in the checkpoint; "
                          "is it in the layout named?")
    prefix = hit[: -len(anchor)]
    kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return kept, [k for k in state if not k.startswith(prefix)], prefix


def _rename(state: dict, rules: list[tuple[str, str]], ignore: str) -> tuple[dict, list[str]]:
    """Apply regex ``rules`` (first match wins); keys matching ``ignore`` are set aside,
    anything else unknown is an error (a silently skipped layer-scale would wreck features)."""
    out, ignored, unknown = {}, [], []
    for key, value in state.items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            (ignored if re.match(ignore, key) else unknown).append(key)
    if unknown:
        raise ConfigError(f"model.video.init: keys this loader cannot map: {_abbreviate(unknown)}")
    return out, ignored


def _fuse_qkv(t: dict) -> dict:
    """blocks.i.attn.{q,k,v}.{weight,bias} -> blocks.i.attn.qkv.* (a missing bias is zero)."""
    blocks = sorted({int(m.group(1)) for k in t if (m := re.match(r"blocks\.(\d+)\.attn\.q\.", k))})
    for i in blocks:
        pre = f"blocks.{i}.attn."
        w = [t.pop(pre + p + ".weight") for p in "qkv"]
        b = [t.pop(pre + p + ".bias", None) for p in "qkv"]
        t[pre + "qkv.weight"] = torch.cat(w)
        if any(x is not None for x in b):
            t[pre + "qkv.bias"] = torch.cat([x if x is not None else torch.zeros(w[0].shape[0])
                                             for x in b])
    return t


def _split_pos(pos: torch.Tensor, extra_tokens: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """[L, D] learned positions, the first ``extra_tokens`` for CLS (and DeiT's distillation
    token) -> (CLS position or None, [g, g, D] patch grid)."""
    cls_pos = pos[0] if extra_tokens else None
    grid = pos[extra_tokens:]
    side = math.isqrt(grid.shape[0])
    if side * side != grid.shape[0]:
        raise ConfigError(f"model.video.init: {grid.shape[0]} patch positions are not a square grid")
    return cls_pos, grid.reshape(side, side, -1)


def _with_pos(token: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return token.reshape(-1) + (pos if pos is not None else 0)


VIT_BLOCK_RULES = [  # HF ViT / VideoMAE encoder layers (the names saved on disk)
    (r"encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.query\.(weight|bias)", r"blocks.\1.attn.q.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.key\.(weight|bias)", r"blocks.\1.attn.k.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.value\.(weight|bias)", r"blocks.\1.attn.v.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.q_bias", r"blocks.\1.attn.q.bias"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.v_bias", r"blocks.\1.attn.v.bias"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"blocks.\1.mlp.2.\2"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
]


def convert_hf_vit(state: dict, hf_config: dict) -> Converted:
    state, outside, prefix = _strip_prefix(state, "embeddings.patch_embeddings.projection.weight")
    rules = VIT_BLOCK_RULES + [(r"embeddings\..*", r"\g<0>")]
    t, ignored = _rename(state, rules, ignore=r"pooler\.")
    cls_pos, grid = _split_pos(t.pop("embeddings.position_embeddings")[0], extra_tokens=1)
    patch_w = t.pop("embeddings.patch_embeddings.projection.weight")
    patch_b = t.pop("embeddings.patch_embeddings.projection.bias")
    cls = _with_pos(t.pop("embeddings.cls_token"), cls_pos)
    for key in [k for k in t if k.startswith("embeddings.")]:
        del t[key]  # e.g. a mask token: not part of the forward pass that is reproduced
        ignored.append(key)
    return Converted(_fuse_qkv(t), patch_w, patch_b, cls, grid, None,
                     [prefix + k for k in ignored] + outside, hf_config)


def convert_hf_clip(state: dict, hf_config: dict) -> Converted:
    state, outside, prefix = _strip_prefix(state, "embeddings.patch_embedding.weight")
    rules = [
        (r"encoder\.layers\.(\d+)\.layer_norm1\.(weight|bias)", r"blocks.\1.norm1.\2"),
        (r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
        (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (r"encoder\.layers\.(\d+)\.layer_norm2\.(weight|bias)", r"blocks.\1.norm2.\2"),
        (r"encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
        (r"encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.2.\2"),
        (r"pre_layrnorm\.(weight|bias)", r"ln_pre.\1"),
        (r"post_layernorm\.(weight|bias)", r"norm.\1"),
        (r"embeddings\.(class_embedding|patch_embedding\.weight|position_embedding\.weight)",
         r"\g<0>"),
    ]
    t, ignored = _rename(state, rules, ignore=r"embeddings\.position_ids")
    cls_pos, grid = _split_pos(t.pop("embeddings.position_embedding.weight"), extra_tokens=1)
    cls = _with_pos(t.pop("embeddings.class_embedding"), cls_pos)
    patch_w = t.pop("embeddings.patch_embedding.weight")
    vision = hf_config.get("vision_config", hf_config)  # CLIPModel nests it
    return Converted(_fuse_qkv(t), patch_w, None, cls, grid, None,
                     [prefix + k for k in ignored] + outside, vision)


def convert_hf_videomae(state: dict, hf_config: dict) -> Converted:
    state, outside, prefix = _strip_prefix(state, "embeddings.patch_embeddings.projection.weight")
    rules = VIT_BLOCK_RULES + [(r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"\g<0>")]
    t, ignored = _rename(state, rules, ignore=r"(fc_norm|classifier|decoder|encoder_to_decoder|mask_token)")
    patch_w = t.pop("embeddings.patch_embeddings.projection.weight")
    patch_b = t.pop("embeddings.patch_embeddings.projection.bias")
    # the sinusoid is not in the file: VideoMAE rebuilds it from config.json
    cfg = {"image_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2, **hf_config}
    grid = (cfg["num_frames"] // cfg["tubelet_size"], cfg["image_size"] // cfg["patch_size"])
    notes = ["VideoMAE has no CLS token: cls_token is new and every token attends to it"]
    return Converted(_fuse_qkv(t), patch_w, patch_b, None, None, None,
                     [prefix + k for k in ignored] + outside, hf_config, notes, pos_sinusoid=grid)


def convert_timm_vit(state: dict, hf_config: dict) -> Converted:
    state, outside, prefix = _strip_prefix(state, "patch_embed.proj.weight")
    rules = [
        (r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj)\.(weight|bias)", r"\g<0>"),
        (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
        (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.2.\2"),
        (r"norm\.(weight|bias)", r"\g<0>"),
        (r"norm_pre\.(weight|bias)", r"ln_pre.\1"),
        (r"(cls_token|pos_embed|patch_embed\.proj\.(weight|bias))", r"\g<0>"),
    ]
    t, ignored = _rename(state, rules, ignore=r"(head|head_dist|fc_norm|dist_token)\b")
    pos = t.pop("pos_embed").reshape(-1, t["patch_embed.proj.weight"].shape[0])
    extra_tokens = 1 + ("dist_token" in state)  # DeiT's distillation token has a position too
    if math.isqrt(pos.shape[0]) ** 2 == pos.shape[0]:
        extra_tokens = 0  # no_embed_class models: the CLS token has no position
    cls_pos, grid = _split_pos(pos, extra_tokens)
    cls = _with_pos(t.pop("cls_token"), cls_pos)
    patch_w, patch_b = t.pop("patch_embed.proj.weight"), t.pop("patch_embed.proj.bias", None)
    return Converted(t, patch_w, patch_b, cls, grid, None,
                     [prefix + k for k in ignored] + outside, hf_config)


def convert_openai_clip(state: dict, hf_config: dict) -> Converted:
    state, outside, prefix = _strip_prefix(state, "conv1.weight")
    rb = r"transformer\.resblocks\.(\d+)\."
    rules = [
        (rb + r"ln_1\.(weight|bias)", r"blocks.\1.norm1.\2"),
        (rb + r"attn\.in_proj_weight", r"blocks.\1.attn.qkv.weight"),
        (rb + r"attn\.in_proj_bias", r"blocks.\1.attn.qkv.bias"),
        (rb + r"attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (rb + r"ln_2\.(weight|bias)", r"blocks.\1.norm2.\2"),
        (rb + r"mlp\.c_fc\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
        (rb + r"mlp\.c_proj\.(weight|bias)", r"blocks.\1.mlp.2.\2"),
        (r"ln_pre\.(weight|bias)", r"\g<0>"),
        (r"ln_post\.(weight|bias)", r"norm.\1"),
        (r"(conv1\.weight|class_embedding|positional_embedding)", r"\g<0>"),
    ]
    t, ignored = _rename(state, rules, ignore=r"(proj|attnpool)\b")
    cls_pos, grid = _split_pos(t.pop("positional_embedding"), extra_tokens=1)
    cls = _with_pos(t.pop("class_embedding"), cls_pos)
    notes = ["activation is not recorded in a CLIP state dict: OpenAI weights use quick_gelu, "
             "most open_clip LAION towers GELU (model.video.act chooses)",
             "the visual projection 'proj' is not loaded (video_proj maps to embed_dim)"]
    patch_w = t.pop("conv1.weight")
    return Converted(t, patch_w, None, cls, grid, None, [prefix + k for k in ignored] + outside,
                     hf_config, notes)


CONVERTERS = {"hf_vit": convert_hf_vit, "hf_clip": convert_hf_clip,
              "hf_videomae": convert_hf_videomae, "timm_vit": convert_timm_vit,
              "openai_clip": convert_openai_clip}


# ----------------------------------------------------------------------------- fitting


def patch_weight_to_linear(weight: torch.Tensor, tubelet: int) -> tuple[torch.Tensor, str | None]:
    """Conv kernel [D, C, P, P] or [D, C, t, P, P] -> Linear weight [D, tubelet*P*P*C] in
    ``patchify``'s (time, row, col, channel) order; the second item says what was inflated."""
    note = None
    if weight.ndim == 4:
        weight = weight[:, :, None]
    t = weight.shape[2]
    if t != tubelet:
        if t == 1:
            # I3D inflation: a clip of identical frames embeds exactly as the single image did
            weight = weight.repeat(1, 1, tubelet, 1, 1) / tubelet
            note = f"patch embedding inflated from 1 to {tubelet} frames (copied, divided by {tubelet})"
        elif tubelet == 1:
            weight = weight.sum(dim=2, keepdim=True)  # same response to a still clip
            note = f"patch embedding of {t} frames summed over time for tubelet 1"
        else:
            raise ConfigError(f"model.video.tubelet: {tubelet} cannot take a {t}-frame patch kernel")
    d = weight.shape[0]
    return weight.permute(0, 2, 3, 4, 1).reshape(d, -1), note


def resize_grid(grid: torch.Tensor, side: int) -> torch.Tensor:
    """[g, g, D] -> [side*side, D], bicubic like timm's ``resample_abs_pos_embed``."""
    g, _, d = grid.shape
    if g != side:
        x = grid.permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
        grid = x[0].permute(1, 2, 0)
    return grid.reshape(side * side, d)


def resize_time(temporal: torch.Tensor, frames: int) -> torch.Tensor:
    """[T, D] -> [frames, D], linear with aligned ends (as ``SeparablePosEmbed`` does)."""
    if temporal.shape[0] == frames:
        return temporal
    if temporal.shape[0] == 1:
        return temporal.expand(frames, -1).clone()
    x = F.interpolate(temporal.t()[None], size=frames, mode="linear", align_corners=True)
    return x[0].t()


def separable_fit(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """[T, S, D] -> (spatial [S, D], temporal [T, D], relative error): the least-squares
    ``table[t, s] ~ temporal[t] + spatial[s]``."""
    spatial = table.mean(dim=0)
    temporal = table.mean(dim=1) - table.mean(dim=(0, 1))
    approx = temporal[:, None] + spatial[None]
    residual = float((table - approx).norm() / table.norm())
    return spatial, temporal, residual


def _check_architecture(cfg: VideoConfig, fmt: str, c: Converted, report: InitReport) -> None:
    """Refuse what would silently wreck the features; note what only nudges them."""
    width, _, *kernel = c.patch_weight.shape
    if width != cfg.width:
        raise ConfigError(f"model.video.width: {cfg.width} here, {width} in the checkpoint")
    if kernel[-1] != cfg.patch_size:
        raise ConfigError(f"model.video.patch_size: {cfg.patch_size} here, {kernel[-1]} in the checkpoint")
    hc = c.hf_config
    heads = hc.get("num_attention_heads")
    if heads is not None and heads != cfg.heads:
        raise ConfigError(f"model.video.heads: {cfg.heads} here, {heads} in the checkpoint")
    if heads is None:
        report.differences.append(f"heads are not recorded in a {fmt} state dict; "
                                  f"model.video.heads={cfg.heads} is assumed")
    default_act = {"hf_clip": "quick_gelu", "openai_clip": None}.get(fmt, "gelu")
    source_act = hc.get("hidden_act", default_act)
    if source_act in ("gelu", "quick_gelu") and source_act != cfg.act:
        raise ConfigError(f"model.video.act: {cfg.act} here, the checkpoint was trained with "
                          f"{source_act}")
    if source_act not in (None, "gelu", "quick_gelu"):
        report.differences.append(f"activation {source_act} in the checkpoint, {cfg.act} here")
    has_ln_pre = "ln_pre.weight" in c.tensors
    if has_ln_pre and not cfg.ln_pre:
        raise ConfigError("model.video.ln_pre: the checkpoint has a LayerNorm before block 0; "
                          "set model.video.ln_pre=true")
    if cfg.ln_pre and not has_ln_pre:
        report.differences.append("ln_pre: on here, absent in the checkpoint (left new)")
    eps = hc.get("layer_norm_eps", {"timm_vit": 1e-6, "openai_clip": 1e-5}.get(fmt))
    if eps is not None and not math.isclose(eps, cfg.norm_eps):
        report.differences.append(f"LayerNorm eps {cfg.norm_eps:g} here, {eps:g} in the checkpoint "
                                  f"(model.video.norm_eps)")
    if "norm.weight" not in c.tensors:
        report.differences.append("the checkpoint has no final LayerNorm on its tokens; "
                                  "norm is new (weight 1, bias 0)")


def _fit(encoder, cfg: VideoConfig, c: Converted, report: InitReport) -> dict[str, torch.Tensor]:
    """The neutral layout -> encoder tensors of this model's sizes."""
    target = {k: v for k, v in c.tensors.items() if not k.startswith("blocks.")}
    blocks = sorted({int(k.split(".")[1]) for k in c.tensors if k.startswith("blocks.")})
    for k, v in c.tensors.items():
        if k.startswith("blocks.") and int(k.split(".")[1]) < cfg.depth:
            target[k] = v
    if len(blocks) > cfg.depth:
        report.ignored += [f"blocks {cfg.depth}..{len(blocks) - 1} (model.video.depth={cfg.depth})"]
    elif len(blocks) < cfg.depth:
        report.differences.append(f"blocks {len(blocks)}..{cfg.depth - 1} are new "
                                  f"(the checkpoint has {len(blocks)})")
    weight, note = patch_weight_to_linear(c.patch_weight, cfg.tubelet)
    target["patch_embed.weight"] = weight
    if note:
        report.interpolated.append(note)
    if c.patch_bias is not None:
        target["patch_embed.bias"] = c.patch_bias
    else:
        target["patch_embed.bias"] = torch.zeros(weight.shape[0])
        report.differences.append("the checkpoint's patch embedding has no bias (zero here)")
    if c.cls is not None:
        target["cls_token"] = c.cls.reshape(1, 1, -1)
    target.update(_positions(cfg, c, report))
    return {k: v.float().contiguous() for k, v in target.items()}


def _positions(cfg: VideoConfig, c: Converted, report: InitReport) -> dict[str, torch.Tensor]:
    """The checkpoint's position embeddings in the form ``model.video.pos_embed`` asks for."""
    frames = cfg.num_frames // cfg.tubelet
    if cfg.pos_embed == "sinusoid":  # fixed: nothing to load
        if c.pos_sinusoid is None:
            report.differences.append("model.video.pos_embed=sinusoid: the checkpoint's learned "
                                      "positions are not used")
        elif c.pos_sinusoid != (frames, cfg.grid):
            t, g = c.pos_sinusoid
            report.differences.append(
                f"VideoMAE's sinusoid was trained on {t}x{g}x{g} tokens, this model has "
                f"{frames}x{cfg.grid}x{cfg.grid}: positions follow the token index, so they shift")
        return {}
    grid, time = c.pos_grid, c.pos_time
    if c.pos_sinusoid is not None:
        t, g = c.pos_sinusoid
        spatial, time, residual = separable_fit(
            sinusoid_table(t * g * g, cfg.width).reshape(t, g * g, -1))
        grid = spatial.reshape(g, g, -1)
        report.differences.append(
            f"VideoMAE's fixed 1-D sinusoid over {t}x{g}x{g} tokens replaced by the nearest "
            f"spatial + temporal sum (relative error {residual:.2f}); "
            "model.video.pos_embed=sinusoid keeps it exact")
    out = {}
    if grid is not None:
        if grid.shape[0] != cfg.grid:
            report.interpolated.append(f"spatial positions {grid.shape[0]}x{grid.shape[0]} -> "
                                       f"{cfg.grid}x{cfg.grid} (bicubic)")
        out["pos.spatial"] = resize_grid(grid, cfg.grid)[None]
    if time is not None:
        if time.shape[0] != frames:
            report.interpolated.append(f"temporal positions {time.shape[0]} -> {frames} (linear)")
        out["pos.temporal"] = resize_time(time, frames)[None]
    else:
        out["pos.temporal"] = torch.zeros(1, frames, cfg.width)
        report.differences.append("image checkpoint: temporal positions start at zero "
                                  "(every frame starts out alike)")
    return out


def _abbreviate(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit})" if len(keys) > limit else "")
