"""SMAUG whose VTC features also align the halves of a clip with the clauses of its caption.

Every order study so far left the VTC score order-blind on one side or the other. The frozen
text tower reads "X, then Y" and "Y, then X" as nearly one sentence (cosine 0.99), so no video
feature, however order-aware, could rank a clip's own caption above its swap; and nothing in
VTC told the video tower which of its frames show which event, so it learned a bag of frames.
The supervised 3-D CNN (studies/order) learned order only when told, per clip, which events came
first.

Here the caption itself says it. ``clauses.py`` splits a caption at its temporal connective into
a first-event clause and a second-event clause; the clip's final tokens split by frame into an
early half and a late half. The VTC features become

    video: [ sqrt(1 - w) * g_v,  sqrt(w / 2) * e,   sqrt(w / 2) * l  ]
    text:  [ sqrt(1 - w) * g_t,  sqrt(w / 2) * c_1, sqrt(w / 2) * c_2 ]

with ``g`` the default feature, ``e``/``l`` the projected means of the early/late tokens,
``c_1``/``c_2`` the projected means of the first/second clause's token states (each part
L2-normalised), so a clip scores a caption

    (1 - w) * g_v . g_t  +  (w / 2) * (e . c_1 + l . c_2).

Swapping a caption's events swaps ``c_1`` and ``c_2``: order reaches the score by construction on
the text side, and VTC's ordinary in-batch contrast now rewards early tokens that show the first
clause's event and late ones the second's, the per-half labels the supervised CNN had, read
from the captions. A caption with no split gives ``c_1 = c_2`` (its whole words); a half with no
surviving token (masking and sparsification may leave one half empty) gives a zero part, so that
half adds nothing. The eval code needs no change: it reads ``encode_video`` / ``encode_text``.

A subclass, as every study here: the default pipeline's code and locks stay as they are. It adds
parameters (``segment_video_proj``, ``segment_text_proj``), so its checkpoints are evaluated with
``python -m studies.levers --segments W --program evaluate -- ...``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from train.model import SMAUG

from .clauses import Connectives, clause_masks


def half_means(tokens: torch.Tensor, ids: torch.Tensor, grid: tuple[int, int, int]):
    """tokens [B, 1+n, D] (CLS first), ids [B, n] (patch index, -1 = fused) ->
    (early, late [B, D], has_early, has_late [B] bool): the mean final token of the frames in the
    first half of the clip and of those in the second (a middle frame of an odd count in
    neither; fused tokens, which belong to no frame, in neither)."""
    frames, gh, gw = grid
    x = tokens[:, 1:]
    if x.shape[1] != ids.shape[1]:
        raise ValueError(f"{x.shape[1]} tokens after CLS but {ids.shape[1]} token ids")
    frame = torch.div(ids, gh * gw, rounding_mode="floor")
    centre = (2 * frame + 1).to(x.dtype)          # 2 * (frame + 0.5), compared with the count
    real = ids >= 0
    early = real & (centre < frames)
    late = real & (centre > frames)
    out = []
    for half in (early, late):
        w = half.to(x.dtype)[..., None]
        out.append((w * x).sum(1) / w.sum(1).clamp_min(1.0))
    return out[0], out[1], early.any(1), late.any(1)


def clause_means(hidden: torch.Tensor, first: torch.Tensor, second: torch.Tensor):
    """hidden [B, L, Dt], first/second [B, L] bool -> the mean state of each clause [B, Dt]."""
    out = []
    for m in (first, second):
        w = m.to(hidden.dtype)[..., None]
        out.append((w * hidden).sum(1) / w.sum(1).clamp_min(1.0))
    return out


class ClauseSegmentSMAUG(SMAUG):
    """``weight`` (set by studies/levers.py before the model is built): the share ``w`` of the
    VTC score from the halves and clauses; 0 leaves the default model."""

    weight: float = 0.0

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        if not 0.0 <= self.weight < 1.0:
            raise ValueError(f"segments weight must be in [0, 1), got {self.weight}")
        self.segment_video_proj = self.segment_text_proj = None
        self._last_video = self._last_ids = None
        if self.weight > 0:
            self.segment_video_proj = nn.Linear(cfg.video.width, cfg.embed_dim)
            self.segment_text_proj = nn.Linear(self.text.hidden_size, cfg.embed_dim)
            t = self.text.special
            self.connectives = Connectives.from_vocab(self.text.path / "vocab.txt", (t.cls, t.sep, t.pad))

    # The features receive tokens / hidden states only. Every caller (the training step,
    # encode_video / encode_text) computes them right after the encoding, so what they also need
    # (the token ids, the caption's ids) is kept at the encoding and checked against the shapes.
    def _encode_video(self, video, *, mask, sparsify=True, generator=None, trace=False):
        enc = super()._encode_video(video, mask=mask, sparsify=sparsify, generator=generator, trace=trace)
        self._last_video = (enc.ids, enc.grid)
        return enc

    def _check_text(self, input_ids, attention_mask) -> None:
        super()._check_text(input_ids, attention_mask)
        self._last_ids = input_ids

    def _mix(self, whole: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        a, b = math.sqrt(1.0 - self.weight), math.sqrt(self.weight / 2.0)
        return torch.cat([a * whole, b * first, b * second], dim=-1)

    def video_feature(self, tokens: torch.Tensor) -> torch.Tensor:
        whole = super().video_feature(tokens)
        if self.segment_video_proj is None:
            return whole
        if self._last_video is None or self._last_video[0].shape != (tokens.shape[0], tokens.shape[1] - 1):
            raise RuntimeError("video_feature needs the token ids of the clip just encoded")
        ids, grid = self._last_video
        early, late, has_early, has_late = half_means(tokens, ids, grid)
        e = F.normalize(self.segment_video_proj(early), dim=-1) * has_early[:, None]
        l = F.normalize(self.segment_video_proj(late), dim=-1) * has_late[:, None]
        return F.normalize(self._mix(whole, e, l), dim=-1)

    def text_feature(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        whole = super().text_feature(hidden, attention_mask)
        if self.segment_text_proj is None:
            return whole
        ids = self._last_ids
        if ids is None or ids.shape != attention_mask.shape:
            raise RuntimeError("text_feature needs the ids of the caption just encoded")
        first, second, _ = clause_masks(ids, attention_mask, self.connectives)
        c1, c2 = clause_means(hidden, first, second)
        c1 = F.normalize(self.segment_text_proj(c1), dim=-1)
        c2 = F.normalize(self.segment_text_proj(c2), dim=-1)
        return F.normalize(self._mix(whole, c1, c2), dim=-1)
