"""SMAUG whose VTC contrasts each clip with a bank of every caption seen (bank.py).

A subclass rather than a change to train/model, as in studies/order: the default pipeline's and
the ablation's stages depend on train/model, and their committed locks must stay valid while
the bank is measured. It adds no parameters (the bank is derived data, and ``BankVTC`` keeps
VTC's one parameter under its name), so its checkpoints load as plain SMAUG checkpoints and
evaluation reads them unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train.data.text import load_tokenizer, tokenize
from train.model import SMAUG
from train.model.objectives import VTC

from .bank import CaptionBank, bank_v2t_loss, t2v_loss


def clip_captions(batch: dict) -> list[list[str]]:
    """Each clip's captions (``meta["captions"]``) with the one the loader drew, in order, once."""
    metas = batch.get("meta")
    if metas is None:
        raise ValueError("the caption bank needs the batch's 'meta' (each clip's captions)")
    drawn = batch.get("text") or [None] * len(metas)
    out = []
    for meta, text in zip(metas, drawn):
        captions = [*(meta.get("captions") or []), text]
        out.append(list(dict.fromkeys(c for c in captions if isinstance(c, str) and c.strip())))
    return out


class BankVTC(VTC):
    """VTC whose video->text half runs over the caption bank while training; in eval mode (and
    with no batch given) it is plain in-batch VTC. Same parameter as VTC (the temperature)."""

    def __init__(self, temperature: float, bank: CaptionBank, model: "CaptionBankSMAUG") -> None:
        super().__init__(temperature)
        self.bank = bank
        # a plain attribute, not a submodule: the model owns this module, not the other way round
        object.__setattr__(self, "_owner", model)
        self.batch: dict | None = None   # the step's batch, set by CaptionBankSMAUG.forward

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if not self.training or self.batch is None:
            return super().forward(video, text)
        captions = clip_captions(self.batch)
        self.bank.add([c for cs in captions for c in cs], self._owner.frozen_pooled)
        bank_text = F.normalize(self._owner.text_proj(self.bank.stored()), dim=-1)
        v2t = bank_v2t_loss(video, bank_text, self.bank.positives(captions), self.temperature)
        return 0.5 * (v2t + t2v_loss(video, text, self.temperature))


class CaptionBankSMAUG(SMAUG):
    """``size`` > 0: VTC's video->text half over the last ``size`` captions seen (every caption of
    every clip in the batches), each clip's own captions its positives."""

    size: int = 0   # set by studies/levers.py before the run builds the model

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        if self.size <= 0:
            return
        layers = len(self.text.bert.encoder.layer)
        if self.text.frozen < layers:
            raise ValueError(
                f"a caption bank needs the whole text tower frozen, but only {self.text.frozen} of "
                f"its {layers} layers are (model.text.freeze_layers); a trained tower would make "
                f"the banked features stale")
        if self.vtc is None:
            raise ValueError("a caption bank serves VTC, and this model has none (objectives.vtc is 0)")
        self.vtc = BankVTC(cfg.temperature, CaptionBank(self.size), self)

    def forward(self, batch: dict, generator: torch.Generator | None = None):
        if not isinstance(self.vtc, BankVTC):
            return super().forward(batch, generator)
        self.vtc.batch = batch
        try:
            out = super().forward(batch, generator)
        finally:
            self.vtc.batch = None
        out.stats["caption_bank"] = float(len(self.vtc.bank))
        return out

    @torch.no_grad()
    def frozen_pooled(self, captions: list[str], chunk: int = 64) -> torch.Tensor:
        """[n, Dt]: the frozen tower's pooled features of ``captions``, before the projection
        (SMAUG.text_feature's pooling, so projecting them gives exactly VTC's text feature)."""
        tokenizer = load_tokenizer(str(self.text.path))
        device = self.text_proj.weight.device
        out = []
        for start in range(0, len(captions), chunk):
            ids, mask = tokenize(tokenizer, captions[start:start + chunk], self.cfg.text.max_len, longest=True)
            ids, mask = ids.to(device), mask.to(device)
            hidden = self.text(ids, mask)
            if self.cfg.text.pooling == "mean":
                weights = mask.to(hidden.dtype)[..., None]
                out.append((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0))
            else:
                out.append(hidden[:, 0])
        return torch.cat(out).float()
