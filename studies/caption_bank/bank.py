"""Caption bank: VTC's video-to-text direction against every caption seen, not only the batch's.

With a batch of 16 clips, in-batch VTC gives each clip 15 negative captions, and on a benchmark
whose captions differ in one colour, one shape or the order of two events, those are rarely the
hard ones. When the text tower is frozen (``text.freeze_layers`` covers every layer, LiT's
"locked" tower), a caption's pooled text feature never changes during training, so it can be
kept: the bank stores the frozen, pooled (pre-projection) feature of every caption of every clip
the batches have brought, and each step projects the whole bank with the *current* text
projection. Nothing in it is stale, unlike a MoCo or ALBEF queue of projected features; the
only cost is one [N, Dt] x [Dt, E] product per step (N = 1,750 captions on the built-in
benchmark) and one frozen text pass per caption the first time it is seen.

Each clip is contrasted with the bank; its positives are all of its own captions in the bank
(a clip carries several paraphrases: ``meta["captions"]``), so the loss is the multi-positive
InfoNCE ``logsumexp(all) - logsumexp(positives)``. The text-to-video direction stays in-batch
(video features cannot be banked: the video tower trains).

The bank is derived data, rebuilt from the batches; it is not a parameter and is not saved in
checkpoints (a resumed run refills it as the batches come). When full, the oldest captions
make room (first in, first out).

Under DDP each rank keeps its own bank from its own batches; the bank loss is a per-rank mean,
which DDP's gradient average turns into the global batch's mean.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from train.model.objectives.vtc import gather_with_grad


class CaptionBank:
    """Frozen pooled text features by caption text, at most ``size`` of them (FIFO)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"caption bank size must be >= 1, got {size}")
        self.size = size
        self.rows: OrderedDict[str, int] = OrderedDict()   # caption -> row, oldest first
        self.features: torch.Tensor | None = None          # [size, Dt], rows 0..len-1 in use

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, caption: str) -> bool:
        return caption in self.rows

    def add(self, captions: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> int:
        """Encode (``encode(list of captions) -> [n, Dt]``) and store the captions not yet in the
        bank; returns how many were added. A caption stays where it is when seen again."""
        new = list(OrderedDict.fromkeys(c for c in captions if c not in self.rows))
        if not new:
            return 0
        # The newest `size` only: older ones would be evicted by the newer ones at once.
        new = new[-self.size:]
        feats = encode(new)
        if feats.shape[0] != len(new):
            raise ValueError(f"encode returned {feats.shape[0]} features for {len(new)} captions")
        if self.features is None:
            self.features = feats.new_zeros(self.size, feats.shape[1])
        feats = feats.to(self.features.device, self.features.dtype)
        for caption, feat in zip(new, feats):
            if len(self.rows) < self.size:
                row = len(self.rows)
            else:
                _, row = self.rows.popitem(last=False)   # the oldest caption makes room
            self.rows[caption] = row
            self.features[row] = feat
        return len(new)

    def positives(self, captions_per_clip: Sequence[Sequence[str]]) -> torch.Tensor:
        """[B, len(bank)] bool: row r is a positive of clip b when its caption is one of b's."""
        if self.features is None:
            raise RuntimeError("the caption bank is empty")
        mask = torch.zeros(len(captions_per_clip), len(self.rows), dtype=torch.bool)
        for b, captions in enumerate(captions_per_clip):
            rows = [self.rows[c] for c in captions if c in self.rows]
            mask[b, rows] = True
        return mask.to(self.features.device)

    def stored(self) -> torch.Tensor:
        """The features in use, [len(bank), Dt] (row order = the positives' columns)."""
        if self.features is None:
            raise RuntimeError("the caption bank is empty")
        return self.features[: len(self.rows)]


def bank_v2t_loss(video: torch.Tensor, bank_text: torch.Tensor, positive: torch.Tensor,
                  temperature: torch.Tensor) -> torch.Tensor:
    """video [B, E], bank_text [N, E] (both L2-normalised), positive [B, N] bool -> the mean over
    clips of the multi-positive InfoNCE, logsumexp over the bank minus logsumexp over the clip's
    own captions. A clip without a positive in the bank is an error (its captions are added
    before the loss, so it means the bank is smaller than one batch's captions)."""
    if not bool(positive.any(dim=1).all()):
        raise ValueError("a clip has none of its captions in the caption bank "
                         "(the bank must hold at least one batch's captions)")
    logits = video @ bank_text.t() / temperature                      # [B, N]
    own = logits.masked_fill(~positive, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(own, dim=1)).mean()


def t2v_loss(video: torch.Tensor, text: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """The text->video half of VTC over the global batch (train/model/objectives/vtc.py's
    vtc_loss without its video->text half, which the bank replaces)."""
    all_video, _ = gather_with_grad(video)
    all_text, _ = gather_with_grad(text)
    targets = torch.arange(all_video.shape[0], device=video.device)
    return F.cross_entropy(all_text @ all_video.t() / temperature, targets)
