"""Video question answering scores: open-ended accuracy and multiple-choice accuracy.

The task modules (:mod:`train.tasks`) answer; this module runs them over a test set, with the
frames of every clip shuffled for the shuffle test when ``shuffle_seed`` is given.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from eval.ensemble import FrameEnsemble
from eval.metrics import choice_accuracy, qa_accuracy
from eval.shuffle import shuffle_frames
from train.tasks import MultipleChoice, OpenEndedQA, normalize_answer


def _maybe_shuffled(batch: dict, shuffle_seed: int | None) -> dict:
    if shuffle_seed is None:
        return batch
    return {**batch, "video": shuffle_frames(batch["video"], batch["key"], shuffle_seed)}


def _group_scores(batch_index: int, batch: dict, ensemble: FrameEnsemble, shuffle_seed, score, group_cache):
    """[(scores, questions)] of each frame group of ``batch``; ``group_cache`` keeps them between
    calls on the same batches (the ensemble study's modes differ only in how they combine them)."""
    out = []
    for g, clip in enumerate(ensemble.split(batch["video"])):
        key = (batch_index, ensemble.groups, g, shuffle_seed)
        if group_cache is None or key not in group_cache:
            value = score({**batch, "video": clip})
            if group_cache is None:
                out.append(value)
                continue
            group_cache[key] = value
        out.append(group_cache[key])
    return out


def evaluate_open_ended(task: OpenEndedQA, batches, *, shuffle_seed: int | None = None,
                        text_cache: dict | None = None, ensemble: FrameEnsemble | None = None,
                        group_cache: dict | None = None) -> dict:
    """Accuracy of the classifier's answers; with a frame ``ensemble`` the answer
    log-probabilities of the frame groups are combined before the argmax."""
    task.eval()
    ensemble = ensemble or FrameEnsemble()
    preds, answers, kinds = [], [], []

    def score(b):
        logits, questions = task.logits(b, text_cache)
        return torch.log_softmax(logits.float(), dim=-1), questions

    with torch.no_grad():
        for i, batch in enumerate(tqdm(batches, desc="QA", leave=False)):
            batch = _maybe_shuffled(batch, shuffle_seed)
            groups = _group_scores(i, batch, ensemble, shuffle_seed, score, group_cache)
            scores, questions = [s for s, _ in groups], groups[0][1]
            if not questions:
                continue
            for p, q in zip(ensemble.combine(scores).argmax(dim=1).tolist(), questions):
                preds.append(task.vocab.answers[p])
                answers.append(normalize_answer(q["answer"]))
                kinds.append(q.get("answer_type") or "all")
    if not answers:
        raise ValueError("the open-ended QA test set has no question")
    result = qa_accuracy(preds, answers, kinds)
    result["in_vocab_fraction"] = 100.0 * sum(a in task.vocab.index for a in answers) / len(answers)
    return result


def evaluate_multiple_choice(task: MultipleChoice, batches, *, shuffle_seed: int | None = None,
                             text_cache: dict | None = None, ensemble: FrameEnsemble | None = None,
                             group_cache: dict | None = None) -> dict:
    """Accuracy of the option with the highest VTM score; with a frame ``ensemble`` each option's
    scores over the frame groups are combined."""
    task.eval()
    ensemble = ensemble or FrameEnsemble()
    all_scores, answers = [], []
    with torch.no_grad():
        for b, batch in enumerate(tqdm(batches, desc="multiple choice", leave=False)):
            batch = _maybe_shuffled(batch, shuffle_seed)
            groups = _group_scores(b, batch, ensemble, shuffle_seed,
                                   lambda x: task.option_scores(x, text_cache), group_cache)
            per_group, questions = [s for s, _ in groups], groups[0][1]
            for i, q in enumerate(questions):
                all_scores.append(ensemble.combine([g[i].float().cpu() for g in per_group]))
                answers.append(int(q["answer_idx"]))
    if not answers:
        raise ValueError("the multiple-choice test set has no question with options")
    width = max(len(s) for s in all_scores)
    padded = torch.full((len(all_scores), width), float("-inf"))
    for i, s in enumerate(all_scores):
        padded[i, :len(s)] = s
    result = choice_accuracy(padded, answers)
    result["chance"] = 100.0 * sum(1.0 / len(s) for s in all_scores) / len(all_scores)
    return result
