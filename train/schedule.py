"""Learning-rate schedule: linear warm-up to the peak, then cosine decay to a floor.

The schedule is a pure function of the step, so resuming needs no scheduler state beyond
the step count (kept in the checkpoint anyway, as a plain int, for checking).
"""

from __future__ import annotations

import math

import torch


def warmup_cosine_lr(step: int, *, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``steps``.

    Steps ``0 .. warmup-1`` rise linearly to ``lr`` (step 0 gets ``lr / warmup``, never 0,
    so the first update is not wasted); the rest follow half a cosine from ``lr`` down to
    ``min_lr``, reached at the last step.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = max(1, steps - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets each param group's ``lr`` before every optimiser step.

    Param groups may carry an ``lr_scale`` (e.g. a lower rate for a pre-trained text tower);
    the group's rate is the scheduled rate times that scale.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, lr: float, min_lr: float,
                 warmup: int, steps: int) -> None:
        self.optimizer = optimizer
        self.lr, self.min_lr, self.warmup, self.steps = lr, min_lr, warmup, steps
        self.step_count = 0

    def lr_at(self, step: int) -> float:
        return warmup_cosine_lr(step, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup,
                                steps=self.steps)

    def apply(self, step: int) -> float:
        """Set the rate for ``step`` on every group; returns the unscaled rate."""
        rate = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_scale", 1.0)
        self.step_count = step
        return rate

    def state_dict(self) -> dict:
        return {"step": self.step_count, "lr": self.lr, "min_lr": self.min_lr,
                "warmup": self.warmup, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
