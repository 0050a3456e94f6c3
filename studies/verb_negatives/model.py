"""SMAUG with verb negatives (verbs.py): each clip must prefer its caption over the same caption
with one event replaced (a two-way softmax at the VTC temperature, on the features VTC uses:
the caption-order study's loss, ``studies.order.model.CaptionNegativeSMAUG``, with another negative).

A subclass, as every study here: the default pipeline's code and locks stay as they are. It adds
no parameters, so its checkpoints load and evaluate as plain SMAUG checkpoints.
"""

from __future__ import annotations

import random

import torch

from studies.order.model import CaptionNegativeSMAUG

from .verbs import replace_event


class VerbNegativeSMAUG(CaptionNegativeSMAUG):
    """``weight`` > 0 (set by studies/levers.py before the model is built): verb negatives."""

    loss_key = "verb_negative"

    def negative_captions(self, texts, generator):
        # the draw follows the run's generator, so a seed repeats its negatives
        seed = (int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
                if generator is not None else 0)
        rng = random.Random(seed)
        return [replace_event(t, rng) for t in texts]
