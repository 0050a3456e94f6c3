"""Test-time frame ensembles: test on more frames than the model was trained on.

Singularity and VindLU train on few frames and test on more. ``eval.frames_ensemble`` says how
the ``eval.ensemble_frames`` (N) test frames of a clip are used:

* ``none``   N is not used; the clip has ``eval.num_frames`` frames (null: the training count).
* ``concat`` one clip of N frames through the video tower (its temporal position embeddings
  interpolated), the same as ``eval.num_frames = N``.
* ``mean`` / ``max`` / ``lse`` the N frames are split into G = N / T groups of T frames (T:
  ``eval.num_frames``, null: the checkpoint's training count; N must be a multiple of T). Group g
  takes frames g, g+G, g+2G, ... so every group spans the whole clip as a training clip did (the
  loader's test frames are the middle frames of N equal segments). Each group is scored on its
  own and the G scores of each (text, video) pair, question answer or option are combined:
  the mean, the max, or ``lse`` = tau * log(mean_g exp(s_g / tau)), a soft max that lies between
  the mean (tau -> inf) and the max (tau -> 0); tau is ``eval.ensemble_temperature``.

The scores combined are the ones each evaluation ranks by: VTC cosine similarities and VTM
logits in retrieval, VTM logits of question+option in multiple choice, and the classifier's
answer log-probabilities in open-ended QA (log-softmax first, so groups are on one scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

MODES = ("none", "concat", "mean", "max", "lse")
GROUP_MODES = ("mean", "max", "lse")  # modes that score groups of frames separately


@dataclass(frozen=True)
class FrameEnsemble:
    """How one evaluation uses a clip's frames; ``groups == 1`` for none / concat."""

    mode: str = "none"
    groups: int = 1  # G
    temperature: float = 0.1  # lse only

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"frames_ensemble: unknown mode {self.mode!r}; one of {', '.join(MODES)}")
        if self.groups < 1 or (self.mode not in GROUP_MODES and self.groups != 1):
            raise ValueError(f"frames_ensemble {self.mode!r}: groups must be 1 for none/concat and >= 1 "
                             f"otherwise, not {self.groups}")
        if self.temperature <= 0:
            raise ValueError(f"ensemble_temperature must be > 0, not {self.temperature}")

    @classmethod
    def plan(cls, mode: str, test_frames: int, group_frames: int, temperature: float = 0.1, *,
             key: str = "eval.ensemble_frames") -> "FrameEnsemble":
        """The ensemble of ``mode`` over ``test_frames`` (N) frames in groups of ``group_frames`` (T);
        ``key`` names the setting N came from in the error."""
        if mode not in GROUP_MODES:
            return cls(mode, 1, temperature)
        if test_frames % group_frames:
            raise ValueError(f"{key}={test_frames} is not a multiple of the group size "
                             f"{group_frames} (eval.num_frames, or the checkpoint's training frame count); "
                             f"frames_ensemble={mode} splits the test frames into equal groups")
        return cls(mode, test_frames // group_frames, temperature)

    @property
    def label(self) -> str:
        return self.mode if self.mode not in GROUP_MODES else (
            f"{self.mode} of {self.groups} groups" + (f", tau {self.temperature:g}" if self.mode == "lse" else ""))

    def split(self, video: torch.Tensor) -> list[torch.Tensor]:
        """[B, N, ...] -> G clips [B, N/G, ...]: group g holds frames g, g+G, ... (in order)."""
        if self.groups == 1:
            return [video]
        n = video.shape[1]
        if n % self.groups:
            raise ValueError(f"a clip of {n} frames cannot be split into {self.groups} equal groups")
        return [video[:, g::self.groups] for g in range(self.groups)]

    def combine(self, scores: Sequence[torch.Tensor]) -> torch.Tensor:
        """Combine G score tensors of one shape, element by element."""
        if len(scores) != self.groups:
            raise ValueError(f"expected {self.groups} group scores, got {len(scores)}")
        if self.groups == 1:
            return scores[0]
        stacked = torch.stack([s.double() for s in scores])
        if self.mode == "mean":
            out = stacked.mean(0)
        elif self.mode == "max":
            out = stacked.amax(0)
        else:  # lse, normalised by G so that equal scores combine to themselves
            t = self.temperature
            out = t * (torch.logsumexp(stacked / t, 0) - math.log(self.groups))
        return out.to(scores[0].dtype)


def group_batches(batches, ensemble: FrameEnsemble, group: int):
    """The loader batches with each clip replaced by its ``group``-th frame group."""
    for batch in batches:
        yield {**batch, "video": ensemble.split(batch["video"])[group]}
