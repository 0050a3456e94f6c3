"""SMAUG whose last pre-training steps see every video patch ("unmasked tuning").

Masked pre-training encodes a quarter of each clip's patches (``masking.video_ratio: 0.75``),
while evaluation encodes all of them: the encoder meets 4x more tokens, and attention patterns it
never trained on, at test time. FLIP (Li et al., CVPR 2023, "Scaling Language-Image
Pre-training via Masking") closes that gap with a short final phase of pre-training without
masking. Here the steps from ``unmasked_from`` on encode the whole clip (token sparsification
stays on, as at test time), and MVM, which has nothing masked to reconstruct, is off for them.

A subclass rather than a change to train/model, as in studies/order: the default pipeline's and
the ablation's stages depend on train/model, and their committed locks must stay valid while
this is measured. It adds no parameters; its checkpoints are plain SMAUG checkpoints.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from train.model import SMAUG


class UnmaskedTuningSMAUG(SMAUG):
    """``unmasked_from`` (a step index, set by studies/levers.py before the run builds
    the model): training steps at or after it run without video masking and without MVM."""

    unmasked_from: int | None = None

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        self._step = 0

    def set_train_step(self, step: int) -> None:
        self._step = step
        super().set_train_step(step)

    def unmasked_now(self) -> bool:
        return self.training and self.unmasked_from is not None and self._step >= self.unmasked_from

    def forward(self, batch: dict, generator: torch.Generator | None = None):
        if not self.unmasked_now():
            return super().forward(batch, generator)
        masked_cfg = self.cfg
        # SMAUG.forward reads masking and the objective weights from self.cfg: this step's copy
        # has no video masking and no MVM (text masking for MLM is unchanged)
        self.cfg = replace(masked_cfg, masking=replace(masked_cfg.masking, video_ratio=0.0),
                           objectives=replace(masked_cfg.objectives, mvm=0.0))
        try:
            out = super().forward(batch, generator)
        finally:
            self.cfg = masked_cfg
        out.stats["unmasked"] = 1.0
        return out
