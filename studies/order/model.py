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


class CaptionNegativeSMAUG(SMAUG):
    """``weight`` > 0: every training caption for which ``negative_captions`` gives a negative
    also scores its clip against that negative, and must prefer its own (two-way softmax at the
    VTC temperature, on the same masked, sparsified clip features VTC uses). The loss and its
    stats are named after ``loss_key``. Subclasses say how a negative is made."""

    weight: float = 0.0   # set by the study's entry point before the run builds the model
    loss_key: str = "caption_negative"

    def negative_captions(self, texts: list[str], generator: torch.Generator | None) -> list[str | None]:
        raise NotImplementedError

    def forward(self, batch: dict, generator: torch.Generator | None = None):
        use = self.training and self.weight > 0 and "text" in batch
        # The first video / text features of the step are VTC's (clean captions): keep them.
        self._features = {} if use else None
        try:
            out = super().forward(batch, generator)
            if not use:
                return out
            negatives = self.negative_captions(list(batch["text"]), generator)
            rows = [i for i, s in enumerate(negatives) if s is not None]
            out.stats[f"{self.loss_key}_share"] = len(rows) / max(1, len(negatives))
            if not rows:
                return out
            tok = load_tokenizer(str(self.text.path))
            ids, mask = tokenize(tok, [negatives[i] for i in rows], self.cfg.text.max_len)
            ids, mask = trim_padding(ids, mask)
            device = self._features["video"].device
            ids, mask = ids.to(device), mask.to(device)
            t_neg = self.text_feature(self.text(ids, mask), mask)
            index = torch.tensor(rows, device=device)
            loss, acc = caption_order_loss(self._features["video"][index], self._features["text"][index],
                                           t_neg, self.vtc.temperature)
            out.losses[self.loss_key] = loss
            out.stats[f"{self.loss_key}_acc"] = acc
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


class CaptionOrderSMAUG(CaptionNegativeSMAUG):
    """``weight`` > 0: every training caption with a temporal connective also scores its
    clip against its order-reversed form, and must prefer its own."""

    loss_key = "caption_order"
    same_form: bool = False   # only swaps that keep the caption's form (caption_order.py)
    same_words: bool = False   # only swaps that reorder the caption's own words (caption_order.py)

    def negative_captions(self, texts, generator):
        return [reverse_event_order(t, self.same_form, self.same_words) for t in texts]
