"""The paper's claim, decided from confidence intervals over seeds and test videos, never one run.

Two halves, zero-shot text-to-video R@1 by VTC ranking:

* **equal steps**: the candidate (smaug) is within ``margin`` (2) points of dense or better;
* **equal wall time**: the candidate is above dense trained for the candidate's wall time.

Each run of a recipe with another seed is a draw of the same experiment. The interval of a
difference ``mean R@1(candidate) - mean R@1(other)`` has two levels. Every resample draws the test
videos with replacement (the same draw for both recipes, since they are ranked on the same
videos; a video keeps all its captions) and takes each recipe's mean over its seeds on that draw.
Seed-to-seed variation is then added as Student's t: the recipe's mean moves by
``t * s / sqrt(n)``, with ``t`` drawn from the t distribution with ``n - 1`` degrees of freedom and
``s`` the sample std of its ``n`` seeds' R@1 (measured on the same test videos, so it is the seeds'
spread alone). Resampling 3 seeds with replacement instead, as a plain two-level bootstrap does,
never moves the mean outside the seeds' own range, and its "95%" interval covered the true mean
85% of the time in a simulation where the seeds' spread dominates (a t interval is exact there
for normal seed effects). Rule: a half **holds** when the whole 95% interval is on the claim's side of the
threshold (> -margin; > 0), **does not hold** when it is entirely on the other side, and
otherwise **cannot tell**. With one seed of a recipe the interval covers only the choice of test
videos, not seed-to-seed variation, and the verdict says so.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


class RunScores:
    """One recipe's seeds: per-query t2v ranks of VTC ranking, on one shared test set."""

    def __init__(self, name: str, runs: list[str], videos: list[int], ranks: list[list[int]]):
        if not runs:
            raise ValueError(f"{name}: no evaluated run")
        self.name, self.runs = name, runs
        self.videos = np.asarray(videos)
        self.num_videos = int(self.videos.max()) + 1
        # hits[s, v]: captions of video v found at rank 1 by seed s; per_video[v]: its captions
        self.hits = np.stack([np.bincount(self.videos, weights=(np.asarray(r) <= 1).astype(float),
                                          minlength=self.num_videos) for r in ranks])
        self.per_video = np.bincount(self.videos, minlength=self.num_videos)

    @property
    def r1(self) -> list[float]:
        return [float(100.0 * h.sum() / self.per_video.sum()) for h in self.hits]

    def draws(self, video_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Mean R@1 over the seeds for each row of video weights [B, V], plus a draw of the seeds'
        own variation (t with n - 1 degrees of freedom, scaled by their std / sqrt(n)) -> [B]."""
        per_seed = 100.0 * (video_weights @ self.hits.T) / (video_weights @ self.per_video)[:, None]  # [B, S]
        mean = per_seed.mean(axis=1)
        n = len(self.runs)
        if n > 1:
            mean = mean + self.seed_std / np.sqrt(n) * rng.standard_t(n - 1, size=len(mean))
        return mean

    @property
    def seed_std(self) -> float:
        """Sample std of the seeds' R@1 on the whole test set (0 for one seed)."""
        return float(np.std(self.r1, ddof=1)) if len(self.runs) > 1 else 0.0


def video_weights(num_videos: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    return rng.multinomial(num_videos, np.full(num_videos, 1.0 / num_videos), size=resamples).astype(float)


def interval(values: np.ndarray) -> list[float]:
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))]


def same_test_set(scores: list[RunScores]) -> None:
    first = scores[0]
    for s in scores[1:]:
        if s.videos.shape != first.videos.shape or not np.array_equal(s.videos, first.videos):
            raise ValueError(f"{s.name} and {first.name} were ranked on different test sets "
                             f"({len(s.videos)} vs {len(first.videos)} queries)")


def recipe_interval(scores: RunScores, resamples: int, seed: int) -> list[float]:
    """95% interval of the recipe's mean R@1 (test videos resampled, the seeds' spread added as t)."""
    rng = np.random.default_rng(seed)
    return interval(scores.draws(video_weights(scores.num_videos, resamples, rng), rng))


def verdict(low: float, high: float, threshold: float) -> str:
    if low > threshold:
        return "holds"
    if high < threshold:
        return "does not hold"
    return "cannot tell"


def seed_spread(*recipes: RunScores) -> str:
    """How far seeds moved R@1 in whichever of ``recipes`` has several, measured, never assumed."""
    seeded = [r for r in recipes if len(r.runs) > 1]
    if not seeded:
        return "not measured: no recipe here has a second seed"
    return "; ".join(f"{r.name}'s {len(r.runs)} seeds spread R@1 by std {np.std(r.r1, ddof=1):.1f}" for r in seeded)


def compare(candidate: RunScores, other: RunScores, threshold: float, resamples: int, seed: int) -> dict:
    """The difference candidate - other, its interval and the verdict against ``threshold``."""
    same_test_set([candidate, other])
    rng = np.random.default_rng(seed)
    weights = video_weights(candidate.num_videos, resamples, rng)
    diff = candidate.draws(weights, rng) - other.draws(weights, rng)
    low, high = interval(diff)
    out = {"difference": float(np.mean(candidate.r1) - np.mean(other.r1)), "ci95": [low, high],
           "threshold": threshold, "verdict": verdict(low, high, threshold),
           "seeds": {candidate.name: len(candidate.runs), other.name: len(other.runs)}}
    one = [s.name for s in (candidate, other) if len(s.runs) == 1]
    if one:
        out["why"] = (f"one seed of {', '.join(one)}: the interval covers the choice of test videos only, not "
                      f"seed-to-seed variation ({seed_spread(candidate, other)})")
        if out["verdict"] == "cannot tell":
            out["why"] += "; it spans the threshold"
    elif out["verdict"] == "cannot tell":
        out["why"] = "the 95% interval over seeds and test videos spans the threshold"
    return out
