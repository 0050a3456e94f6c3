"""``model:`` section of params.yaml as a frozen dataclass (:class:`ModelConfig`).

Build it with ``pipeline.config.section(params, ModelConfig, "model")``; a bad value raises
``ConfigError("model.<key>: ...")``. Every switch the recipes need is a value here:

* ``masking.video_ratio: 0`` -> no video masking; ``masking.video_mode: tube`` -> SimVTP tubes;
* ``sparsify.enabled: false`` -> no token sparsification (``spatial`` / ``temporal`` separately);
* ``objectives.<name>: 0`` -> that objective is not built into the step at all (no compute);
* ``video.num_frames: 1`` -> Singularity-style single frame;
* ``mvm.target: pixels | hog`` -> the reconstruction target (a pluggable function).

The paper-scale ViT-B/16 is the recipe overlay ``pipeline/recipes/vit-b16.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import check


@dataclass(frozen=True)
class VideoConfig:
    image_size: int = 128         # square input side the position embeddings are built for
    patch_size: int = 16          # spatial patch side P
    num_frames: int = 4           # frames T the temporal position embeddings are built for
    tubelet: int = 1              # frames per patch: 1 = one PxP patch per frame, 2 = 2xPxP tubes
    width: int = 256              # ViT hidden size D
    depth: int = 6                # number of ViT blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.0        # stochastic depth, linearly increasing up to this value
    act: Literal["gelu", "quick_gelu"] = "gelu"  # MLP activation (OpenAI CLIP weights: quick_gelu)
    ln_pre: bool = False          # LayerNorm on the embedded tokens before block 0 (CLIP has one)
    norm_eps: float = 1.0e-6      # LayerNorm epsilon of the tower (timm 1e-6, CLIP 1e-5, HF ViT 1e-12)
    pos_embed: Literal["separable", "sinusoid"] = "separable"  # sinusoid: VideoMAE's fixed 1-D table
    init: str | None = None       # pretrained weights to start from (train/model/pretrained.py)
    init_format: Literal["auto", "hf_vit", "hf_clip", "hf_videomae", "timm_vit", "openai_clip"] = "auto"

    def __post_init__(self) -> None:
        check(self.patch_size >= 1, "patch_size", "must be >= 1")
        check(self.image_size >= self.patch_size and self.image_size % self.patch_size == 0,
              "image_size", f"must be a positive multiple of patch_size={self.patch_size}")
        check(self.tubelet in (1, 2), "tubelet", "must be 1 or 2")
        check(self.num_frames >= 1 and self.num_frames % self.tubelet == 0,
              "num_frames", f"must be >= 1 and a multiple of tubelet={self.tubelet}")
        check(self.width >= 8, "width", "must be >= 8")
        check(self.depth >= 1, "depth", "must be >= 1")
        check(self.heads >= 1 and self.width % self.heads == 0, "heads",
              f"must divide width={self.width}")
        check(self.mlp_ratio > 0, "mlp_ratio", "must be > 0")
        check(0.0 <= self.drop_path < 1.0, "drop_path", "must be in [0, 1)")
        check(self.act in ("gelu", "quick_gelu"), "act", f"must be gelu or quick_gelu, got {self.act!r}")
        check(0.0 < self.norm_eps < 1.0, "norm_eps", "must be in (0, 1)")
        check(self.pos_embed in ("separable", "sinusoid"), "pos_embed",
              f"must be separable or sinusoid, got {self.pos_embed!r}")
        formats = ("auto", "hf_vit", "hf_clip", "hf_videomae", "timm_vit", "openai_clip")
        check(self.init_format in formats, "init_format",
              f"must be one of {', '.join(formats)}, got {self.init_format!r}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


# BERT shapes a random-weight text tower can take (``text.init: random``), e.g. to count the
# cost of a model whose checkpoint is not at hand. Keys are BertConfig fields.
TEXT_ARCHS = {
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072},
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "intermediate_size": 4096},
}


@dataclass(frozen=True)
class TextConfig:
    path: str | None = None       # local BERT checkpoint folder; null = offline all-MiniLM-L6-v2
    init: Literal["pretrained", "random"] = "pretrained"  # random: the architecture only (cost counts, tests)
    arch: str | None = None       # with init: random, a TEXT_ARCHS shape instead of the folder's config
    max_len: int = 32             # longest tokenised text the model accepts
    num_layers: int | None = None  # use only the first N BERT layers (null = all)
    freeze_layers: int = 6        # embeddings + the first N layers frozen and run under no_grad
    lr_scale: float = 1.0         # the trainable text layers learn at this x the run's lr
    pooling: str = "cls"          # VTC text feature: cls (BERT's [CLS]) | mean (masked mean of tokens)

    def __post_init__(self) -> None:
        check(self.init in ("pretrained", "random"), "init",
              f"must be pretrained or random, got {self.init!r}")
        check(self.arch is None or self.arch in TEXT_ARCHS, "arch",
              f"must be null or one of {', '.join(TEXT_ARCHS)}, got {self.arch!r}")
        check(self.arch is None or self.init == "random", "arch",
              "applies only with text.init: random (a pretrained checkpoint brings its own shape)")
        check(self.max_len >= 4, "max_len", "must be >= 4")
        check(self.num_layers is None or self.num_layers >= 1, "num_layers",
              "must be null or >= 1")
        check(self.freeze_layers >= 0, "freeze_layers", "must be >= 0")
        check(self.lr_scale > 0, "lr_scale", "must be > 0")
        check(self.pooling in ("cls", "mean"), "pooling", f"must be cls or mean, got {self.pooling!r}")
        if self.num_layers is not None:
            check(self.freeze_layers <= self.num_layers, "freeze_layers",
                  f"must be <= text.num_layers={self.num_layers}")


@dataclass(frozen=True)
class FusionConfig:
    layers: int = 1               # cross-modal layers (text self-attn + cross-attn to video + MLP)
    heads: int = 6                # must divide the text hidden size (384 for MiniLM)
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        check(self.layers >= 1, "layers", "must be >= 1")
        check(self.heads >= 1, "heads", "must be >= 1")
        check(self.mlp_ratio > 0, "mlp_ratio", "must be > 0")


@dataclass(frozen=True)
class MaskingConfig:
    video_ratio: float = 0.75     # fraction of video patches dropped before the encoder (0 = none)
    video_mode: Literal["random", "tube"] = "random"  # tube: one spatial mask for every frame
    text_ratio: float = 0.15      # MLM masking ratio (BERT 80/10/10 replacement)
    text_pass: Literal["two", "shared"] = "two"  # shared: one masked text pass feeds VTC, VTM and MLM

    def __post_init__(self) -> None:
        check(0.0 <= self.video_ratio < 1.0, "video_ratio", "must be in [0, 1)")
        check(0.0 < self.text_ratio < 1.0, "text_ratio", "must be in (0, 1)")
        check(self.text_pass in ("two", "shared"), "text_pass",
              f"must be two or shared, got {self.text_pass!r}")


@dataclass(frozen=True)
class SparsifyConfig:
    enabled: bool = True
    layers: list[int] = field(default_factory=lambda: [1])  # 0-based ViT blocks sparsified after
    spatial: bool = True          # keep top tokens by CLS attention, fuse the rest into one token
    spatial_keep: float = 0.5
    temporal: bool = True         # keep the top frames by mean CLS attention of their tokens
    temporal_keep: float = 0.5
    # Pre-training steps over which both keep rates fall from 1.0 (nothing dropped) to the values
    # above, on EViT's cosine (train/model/sparsify.py keep_schedule); 0 = full strength from step 0.
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        check(len(set(self.layers)) == len(self.layers), "layers", "has duplicates")
        check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0 (0 = no warm-up)")
        check(all(i >= 0 for i in self.layers), "layers", "must be >= 0")
        check(0.0 < self.spatial_keep <= 1.0, "spatial_keep", "must be in (0, 1]")
        check(0.0 < self.temporal_keep <= 1.0, "temporal_keep", "must be in (0, 1]")
        if self.enabled:
            check(len(self.layers) > 0, "layers", "must name at least one layer")

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.layers) and (self.spatial or self.temporal)


@dataclass(frozen=True)
class ObjectivesConfig:
    """Loss weights; a weight of 0 removes that objective (and its compute) from the step."""

    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    mvm: float = 1.0
    order: float = 0.0    # temporal-order contrast (OrderConfig): a clip's time-perturbed copy is a negative for its caption

    def __post_init__(self) -> None:
        for name in ("vtc", "vtm", "mlm", "mvm", "order"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        check(any(getattr(self, n) > 0 for n in ("vtc", "vtm", "mlm", "mvm")),
              "vtc", "all objective weights are 0; at least one of vtc, vtm, mlm, mvm must be > 0")


@dataclass(frozen=True)
class MVMConfig:
    target: Literal["pixels", "hog"] = "pixels"
    norm_pix: bool = True          # normalise each target patch by its own mean/std (MAE)
    decoder_width: int = 128
    decoder_depth: int = 1
    decoder_heads: int = 4

    def __post_init__(self) -> None:
        check(self.decoder_width >= 8, "decoder_width", "must be >= 8")
        check(self.decoder_depth >= 1, "decoder_depth", "must be >= 1")
        check(self.decoder_heads >= 1 and self.decoder_width % self.decoder_heads == 0,
              "decoder_heads", f"must divide decoder_width={self.decoder_width}")


@dataclass(frozen=True)
class OrderConfig:
    """The temporal-order objective (``objectives.order`` > 0): for a share of the batch, the
    clip with its frames perturbed in time is encoded again and must score below the clip
    itself against the clip's caption (a two-way softmax at the VTC temperature). Without it
    nothing in pre-training rewards reading frame order: the same frames in any order are an
    equally good match for "X, then Y" (HiTeA's shuffle test measures exactly that)."""

    negative: Literal["reverse", "swap_halves", "shuffle"] = "reverse"  # reverse: played backwards ("moves left" -> "moves right", "X then Y" -> "Y then X")
    fraction: float = 0.25         # share of each batch given a perturbed copy (each costs one more video pass)

    def __post_init__(self) -> None:
        check(0.0 < self.fraction <= 1.0, "fraction", "must be in (0, 1]")


@dataclass(frozen=True)
class VTMConfig:
    hard_negatives: bool = True    # sample negatives by softmax of VTC similarity (else uniform)


@dataclass(frozen=True)
class ModelConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    embed_dim: int = 256           # shared video-text embedding size for VTC
    temperature: float = 0.07      # initial VTC temperature (learnable, clamped to [0.001, 0.5])
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    sparsify: SparsifyConfig = field(default_factory=SparsifyConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    mvm: MVMConfig = field(default_factory=MVMConfig)
    vtm: VTMConfig = field(default_factory=VTMConfig)
    order: OrderConfig = field(default_factory=OrderConfig)

    def __post_init__(self) -> None:
        check(self.embed_dim >= 1, "embed_dim", "must be >= 1")
        check(0.001 <= self.temperature <= 0.5, "temperature", "must be in [0.001, 0.5]")
        if self.sparsify.active:
            bad = [i for i in self.sparsify.layers if i >= self.video.depth]
            check(not bad, "sparsify.layers",
                  f"layer {bad[0] if bad else ''} out of range for video.depth={self.video.depth}")
        if self.objectives.mvm > 0:
            check(self.masking.video_ratio > 0, "objectives.mvm",
                  "masked video modelling needs masking.video_ratio > 0 (set mvm: 0 otherwise)")
