"""Retrieval and QA metrics, with the tie convention written down.

Ranks (1-based) follow the *pessimistic* convention: a candidate that scores exactly as
high as the correct item is counted as ranked above it. For a query whose set of correct
candidates is ``C`` and whose best correct score is ``s* = max_{c in C} score[c]``::

    rank = 1 + #{ j not in C : score[j] >= s* }

so ties never flatter a model (a constant scorer gets rank N, not rank 1), and other
correct candidates (a video's other captions in video-to-text retrieval) never count
against the query. Recall@K is the fraction of queries with ``rank <= K``; median and mean
rank are taken over queries. A query with no correct candidate is an error, not a miss.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np
import torch

DEFAULT_KS = (1, 5, 10)


def ranks_from_scores(scores: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Pessimistic 1-based rank of the best correct candidate, one per query.

    scores:  [Q, N] float, higher is better.
    correct: [Q, N] bool, True where candidate j is a right answer for query i.
    returns: [Q] long.
    """
    if scores.shape != correct.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and correct {tuple(correct.shape)} must be equal [Q, N]")
    if not bool(correct.any(dim=1).all()):
        bad = int((~correct.any(dim=1)).nonzero()[0])
        raise ValueError(f"query {bad} has no correct candidate")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    scores = scores.double()
    best_correct = scores.masked_fill(~correct, float("-inf")).max(dim=1).values  # [Q]
    above = (scores >= best_correct[:, None]) & ~correct  # wrong candidates at or above
    return 1 + above.sum(dim=1)


def recall_summary(ranks: torch.Tensor | Sequence[int], ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """R@K in percent, median rank (MdR) and mean rank (MnR) from 1-based ranks."""
    r = np.asarray(torch.as_tensor(ranks).cpu().numpy(), dtype=np.float64)
    if r.size == 0:
        raise ValueError("no queries to summarise")
    out = {f"R@{k}": float(100.0 * np.mean(r <= k)) for k in ks}
    out["MdR"] = float(np.median(r))
    out["MnR"] = float(np.mean(r))
    out["num_queries"] = int(r.size)
    return out


def bootstrap_recall_ci(ranks: torch.Tensor | Sequence[int], query_videos: Sequence[int],
                        ks: Iterable[int] = DEFAULT_KS, *, resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap interval of R@K over test videos: each resample draws the videos with
    replacement and keeps every query (caption) of each drawn video, as often as it was drawn, so
    a video's captions move together (they are not independent queries). Fixed ``seed``.

    ranks: [Q] 1-based ranks; query_videos: [Q] the video each query belongs to.
    Returns ``{"R@K": [low, high]}`` in percent.
    """
    r = np.asarray(torch.as_tensor(ranks).cpu().numpy(), dtype=np.float64)
    if r.size == 0 or len(query_videos) != r.size:
        raise ValueError(f"{r.size} ranks for {len(query_videos)} query videos")
    _, video = np.unique(np.asarray(query_videos), return_inverse=True)
    num_videos = int(video.max()) + 1
    per_video = np.bincount(video, minlength=num_videos)
    draws = np.random.default_rng(seed).multinomial(num_videos, np.full(num_videos, 1.0 / num_videos),
                                                    size=resamples)  # [B, V] times each video is drawn
    queries = draws @ per_video
    tail = 100.0 * (1.0 - level) / 2.0
    out = {}
    for k in ks:
        hits = np.bincount(video, weights=(r <= k).astype(np.float64), minlength=num_videos)
        values = 100.0 * (draws @ hits) / queries
        out[f"R@{k}"] = [float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))]
    return out


def groups_to_mask(query_groups: Sequence[int], candidate_groups: Sequence[int]) -> torch.Tensor:
    """``correct[i, j] = query_groups[i] == candidate_groups[j]`` as a bool matrix."""
    q = torch.as_tensor(list(query_groups))
    c = torch.as_tensor(list(candidate_groups))
    return q[:, None] == c[None, :]


def retrieval_metrics(
    sim_t2v: torch.Tensor, text_to_video: Sequence[int], ks: Iterable[int] = DEFAULT_KS
) -> dict[str, dict[str, float]]:
    """Text-to-video and video-to-text metrics from one similarity matrix.

    sim_t2v:       [num_texts, num_videos] similarity of each text to each video.
    text_to_video: [num_texts] index of the video each text describes (several texts may
                   share a video: each is its own t2v query, and in v2t the video is a hit
                   as soon as any of its texts is found).
    """
    num_texts, num_videos = sim_t2v.shape
    if len(text_to_video) != num_texts:
        raise ValueError(f"{len(text_to_video)} text_to_video entries for {num_texts} texts")
    correct_t2v = groups_to_mask(text_to_video, range(num_videos))
    t2v = ranks_from_scores(sim_t2v, correct_t2v)
    v2t = ranks_from_scores(sim_t2v.t(), correct_t2v.t())
    ks = tuple(ks)
    return {"t2v": recall_summary(t2v, ks), "v2t": recall_summary(v2t, ks)}


# --------------------------------------------------------------------------- QA


def qa_accuracy(
    predictions: Sequence[str], answers: Sequence[str], answer_types: Sequence[str] | None = None
) -> dict[str, float | dict[str, float]]:
    """Accuracy in percent, overall and per answer type.

    Predictions are compared as strings, so a question whose answer lies outside the
    classifier's vocabulary can never be right: it counts as wrong, as in ClipBERT/ALPRO.
    """
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        raise ValueError("no questions to score")
    hits = [p == a for p, a in zip(predictions, answers)]
    out: dict[str, float | dict[str, float]] = {
        "accuracy": 100.0 * sum(hits) / len(hits),
        "num_questions": len(hits),
    }
    if answer_types is not None:
        if len(answer_types) != len(answers):
            raise ValueError(f"{len(answer_types)} answer types for {len(answers)} answers")
        per: dict[str, list[bool]] = defaultdict(list)
        for hit, kind in zip(hits, answer_types):
            per[str(kind)].append(hit)
        out["per_type"] = {k: 100.0 * sum(v) / len(v) for k, v in sorted(per.items())}
        out["per_type_count"] = {k: len(v) for k, v in sorted(per.items())}
    return out


def choice_accuracy(option_scores: Sequence[Sequence[float]] | torch.Tensor, answer_idx: Sequence[int]) -> dict[str, float]:
    """Multiple choice: the option with the highest score is the prediction.

    Ties go to the lowest option index (torch.argmax), a fixed rule so the result is
    deterministic; accuracy in percent.
    """
    scores = torch.as_tensor(option_scores, dtype=torch.float64)
    if scores.dim() != 2 or scores.shape[0] != len(answer_idx):
        raise ValueError(f"option_scores {tuple(scores.shape)} do not match {len(answer_idx)} answers")
    pred = scores.argmax(dim=1)
    hits = pred == torch.as_tensor(list(answer_idx))
    return {"accuracy": 100.0 * float(hits.double().mean()), "num_questions": int(len(hits))}


def majority_baseline(train_answers: Sequence[str], test_answers: Sequence[str]) -> dict[str, float | str]:
    """Accuracy of always answering the most frequent training answer (the QA chance level)."""
    if not train_answers or not test_answers:
        raise ValueError("majority baseline needs train and test answers")
    counts: dict[str, int] = defaultdict(int)
    for a in train_answers:
        counts[a] += 1
    top = min(counts, key=lambda a: (-counts[a], a))
    return {"answer": top, "accuracy": 100.0 * sum(a == top for a in test_answers) / len(test_answers)}
