"""SMAUG with caption-order negatives (studies/order/caption_order.py) added to its loss.

A subclass rather than a change to train/model: the study's arms must not touch what the
default pipeline's and the ablation's stages depend on, so their committed locks stay valid.
It adds no parameters: its checkpoints load as plain SMAUG checkpoints, and evaluation reads
them unchanged.
"""

from __future__ import annotations

import torch

from train.data.text import load_tokenizer, tokenize
from train.model import SMAUG
from train.model.smaug import trim_padding

from .caption_order import caption_order_loss, reverse_event_order


class CaptionOrderSMAUG(SMAUG):
    """``weight`` > 0: every training caption with a temporal connective also scores its
    clip against its order-reversed form, and must prefer its own (two-way softmax at the VTC
    temperature, on the same masked, sparsified clip features VTC uses)."""

    weight: float = 0.0   # set by studies/order/train.py before the run builds the model
    same_form: bool = False   # only swaps that keep the caption's form (caption_order.py)
    same_words: bool = False   # only swaps that reorder the caption's own words (caption_order.py)

    def forward(self, batch: dict, generator: torch.Generator | None = None):
        use = self.training and self.weight > 0 and "text" in batch
        # The first video / text features of the step are VTC's (clean captions): keep them.
        self._features = {} if use else None
        try:
            out = super().forward(batch, generator)
            if not use:
                return out
            swapped = [reverse_event_order(t, self.same_form, self.same_words) for t in batch["text"]]
            rows = [i for i, s in enumerate(swapped) if s is not None]
            out.stats["caption_order_share"] = len(rows) / max(1, len(swapped))
            if not rows:
                return out
            tok = load_tokenizer(str(self.text.path))
            ids, mask = tokenize(tok, [swapped[i] for i in rows], self.cfg.text.max_len)
            ids, mask = trim_padding(ids, mask)
            device = self._features["video"].device
            ids, mask = ids.to(device), mask.to(device)
            t_swap = self.text_feature(self.text(ids, mask), mask)
            index = torch.tensor(rows, device=device)
            loss, acc = caption_order_loss(self._features["video"][index], self._features["text"][index],
                                           t_swap, self.vtc.temperature)
            out.losses["caption_order"] = loss
            out.stats["caption_order_acc"] = acc
            out.loss = out.loss + self.weight * loss
            return out
        finally:
            self._features = None

    def video_feature(self, tokens: torch.Tensor) -> torch.Tensor:
        feat = super().video_feature(tokens)
        if getattr(self, "_features", None) is not None:
            self._features.setdefault("video", feat)
        return feat

    def text_feature(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feat = super().text_feature(hidden, attention_mask)
        if getattr(self, "_features", None) is not None:
            self._features.setdefault("text", feat)
        return feat
