"""SMAUG whose video tower embeds each patch with a small convolutional stem instead of one linear map.

The default tower embeds a 16 x 16 patch with a single linear layer (ViT's patch embedding).
Trained from scratch on a few hundred clips, that tower does not learn which events a clip shows,
even with the events as labels (studies/order, "Direct supervision"). Xiao et al. ("Early
convolutions help transformers see better", 2021) replace ViT's patchify layer with a few
stride-2 3 x 3 convolutions and find from-scratch ViTs train faster, more stably and better; the
original ViT's hybrid model does the same with a ResNet stem.

Here the stem runs on each patch on its own, so MAE-style masking keeps its saving: only the
visible patches are embedded, exactly as with the linear layer. A 16-px patch goes through
``log2(P / 2)`` stride-2 convolutions (16 -> 8 -> 4 -> 2, channels doubling from
``base_channels``) and a linear map of the 2 x 2 map to the tower's width. MVM still reconstructs
pixels: its targets are cut by ``patches.patchify``, which this leaves alone.

A subclass, as every study here, so the default pipeline's code and locks stay as they are. It
adds parameters: evaluate its checkpoints with ``python -m studies.levers --conv-stem
--program evaluate -- ...``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

import train.model.video_encoder as video_encoder
from train.model import SMAUG


class PatchConvStem(nn.Module):
    """Flattened patches [B, N, tubelet*P*P*3] (``patchify``'s layout) -> tokens [B, N, width].

    Each patch is its own tiny image: a tubelet of 2 frames stacks its frames as 6 channels.
    ``norm``: ``none`` (the default) or ``group``, a GroupNorm after each convolution. GroupNorm
    normalises each patch over its own pixels, so a patch of flat colour comes out the same
    whatever its colour: on a benchmark whose captions name colours that costs retrieval
    (README). BatchNorm, Xiao et al.'s choice, would make a token depend on which other
    patches the batch and the mask happened to hold.
    """

    NORMS = ("none", "group")

    def __init__(self, patch: int, tubelet: int, width: int, base_channels: int = 32,
                 norm: str = "none") -> None:
        super().__init__()
        if patch < 4 or patch & (patch - 1):
            raise ValueError(f"a conv stem needs a power-of-two patch size >= 4, got {patch}")
        if norm not in self.NORMS:
            raise ValueError(f"unknown conv stem norm {norm!r}: one of {', '.join(self.NORMS)}")
        self.patch, self.tubelet = patch, tubelet
        layers: list[nn.Module] = []
        channels, side = 3 * tubelet, patch
        out = base_channels
        for _ in range(int(math.log2(patch)) - 1):  # stop at a 2 x 2 map
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1),
                       nn.GroupNorm(min(8, out), out) if norm == "group" else nn.Identity(), nn.GELU()]
            channels, side, out = out, side // 2, out * 2
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels * side * side, width)

    @property
    def in_features(self) -> int:
        return self.tubelet * self.patch * self.patch * 3

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, n, f = patches.shape
        if f != self.in_features:
            raise ValueError(f"patches of {f} values, the stem was built for {self.in_features}")
        p = self.patch
        # patchify's layout is [tubelet, p, p, C]: frames of a tubelet become channels
        x = patches.reshape(b * n, self.tubelet, p, p, 3).permute(0, 1, 4, 2, 3)
        x = self.convs(x.reshape(b * n, self.tubelet * 3, p, p))
        return self.proj(x.flatten(1)).reshape(b, n, -1)


class ClipConvTokenizer(nn.Module):
    """The whole clip [B, T, 3, H, W] -> one feature per patch [B, T * H/P * W/P, C], time-major.

    ``log2(P)`` stages of 3 x 3 x 3 convolutions, stride 2 in space and 1 in time, channels
    doubling from ``base_channels``, GELU, and with ``norm="group"`` a GroupNorm over the whole
    clip's map: then it is the 3-D CNN of ``studies.order.supervised --tower conv3d`` (which
    averages ``feature_map`` over space per frame), the one tower there that learnt event order.
    Each token then carries what changed around its patch in the neighbouring frames, so masking
    the tokens afterwards no longer hides a change from the tower. The price: the convolutions
    run on every patch, masked or not.
    """

    def __init__(self, patch: int, base_channels: int = 32, norm: str = "none") -> None:
        super().__init__()
        if patch < 2 or patch & (patch - 1):
            raise ValueError(f"a clip tokenizer needs a power-of-two patch size, got {patch}")
        if norm not in PatchConvStem.NORMS:
            raise ValueError(f"unknown conv stem norm {norm!r}: one of {', '.join(PatchConvStem.NORMS)}")
        layers: list[nn.Module] = []
        channels = 3
        for i in range(int(math.log2(patch))):
            out = base_channels * 2 ** i
            layers += [nn.Conv3d(channels, out, 3, stride=(1, 2, 2), padding=1),
                       nn.GroupNorm(min(8, out), out) if norm == "group" else nn.Identity(), nn.GELU()]
            channels = out
        self.convs = nn.Sequential(*layers)
        self.patch, self.out_channels = patch, channels

    def feature_map(self, video: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> [B, C, T, H/P, W/P], the map before it is cut into tokens."""
        return self.convs(video.transpose(1, 2))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, t, _, h, w = video.shape
        if h % self.patch or w % self.patch:
            raise ValueError(f"frames {h}x{w} do not split into {self.patch}-px patches")
        x = self.feature_map(video)                       # [B, C, T, h/P, w/P]
        return x.permute(0, 2, 3, 4, 1).reshape(b, -1, self.out_channels)


class ConvStemVideoEncoder(video_encoder.VideoEncoder):
    """``kind``: ``patch`` (PatchConvStem on each visible patch), ``clip3d`` (ClipConvTokenizer
    on the whole clip, then masking picks the visible tokens' features) or ``clip3d-res`` (each
    token reads its pixels, as the default's linear patch embedding does, plus the tokenizer's
    feature through a projection that starts at zero: at step 0 the tower is the default's)."""

    KINDS = ("patch", "clip3d", "clip3d-res")

    def __init__(self, cfg, sparsify=None, base_channels: int = 32, norm: str = "none",
                 kind: str = "patch") -> None:
        super().__init__(cfg, sparsify)
        if kind not in self.KINDS:
            raise ValueError(f"unknown conv stem kind {kind!r}: one of {', '.join(self.KINDS)}")
        self.kind = kind
        if kind == "patch":
            self.patch_embed = PatchConvStem(cfg.patch_size, cfg.tubelet, cfg.width, base_channels, norm)
        else:
            if cfg.tubelet != 1:
                raise ValueError(f"the clip3d tokenizer keeps one token per frame: model.video.tubelet must be 1, "
                                 f"got {cfg.tubelet}")
            self.tokenizer = ClipConvTokenizer(cfg.patch_size, base_channels, norm)
            pixels = cfg.patch_size ** 2 * 3 if kind == "clip3d-res" else 0
            self.patch_embed = nn.Linear(pixels + self.tokenizer.out_channels, cfg.width)
            if pixels:
                with torch.no_grad():
                    self.patch_embed.weight[:, pixels:].zero_()

    def forward(self, video: torch.Tensor, **kwargs):
        if self.kind == "patch":
            return super().forward(video, **kwargs)
        with self._tokens_as_patches():
            return super().forward(video, **kwargs)

    @contextmanager
    def _tokens_as_patches(self):
        # The tower's forward cuts the clip with its module's ``patchify`` and masks what that
        # returns; handing it the tokenizer's per-patch features instead reuses that forward
        # (masking, sparsification) unchanged. MVM's pixel targets use patches.patchify, untouched.
        plain = video_encoder.patchify
        tokenizer, with_pixels = self.tokenizer, self.kind == "clip3d-res"

        def features(video, patch, tubelet=1):
            if with_pixels:
                return torch.cat([plain(video, patch, tubelet), tokenizer(video)], dim=-1)
            return tokenizer(video)

        video_encoder.patchify = features
        try:
            yield
        finally:
            video_encoder.patchify = plain


class ConvStemSMAUG(SMAUG):
    """``enabled``, ``norm`` and ``kind`` (set by studies/levers.py before the model is built)."""

    enabled: bool = False
    base_channels: int = 32
    norm: str = "none"
    kind: str = "patch"

    def __init__(self, cfg, **kwargs) -> None:
        if self.enabled and cfg.video.init is not None:
            raise ValueError("a conv stem replaces the patch embedding, so the tower starts from scratch: "
                             f"model.video.init must be null, got {cfg.video.init!r}")
        super().__init__(cfg, **kwargs)
        if self.enabled:
            self.video = ConvStemVideoEncoder(cfg.video, cfg.sparsify, self.base_channels, self.norm, self.kind)
