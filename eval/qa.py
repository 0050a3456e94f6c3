"""Video question answering scores: open-ended accuracy and multiple-choice accuracy.

The task modules (:mod:`train.tasks`) answer; this module runs them over a test set, with the
frames of every clip shuffled for the shuffle test when ``shuffle_seed`` is given.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from eval.metrics import choice_accuracy, qa_accuracy
from eval.shuffle import shuffle_frames
from train.tasks import MultipleChoice, OpenEndedQA, normalize_answer


def _maybe_shuffled(batch: dict, shuffle_seed: int | None) -> dict:
    if shuffle_seed is None:
        return batch
    return {**batch, "video": shuffle_frames(batch["video"], batch["key"], shuffle_seed)}


def evaluate_open_ended(task: OpenEndedQA, batches, *, shuffle_seed: int | None = None,
                        text_cache: dict | None = None) -> dict:
    task.eval()
    preds, answers, kinds = [], [], []
    for batch in tqdm(batches, desc="QA", leave=False):
        for pred, q in task.predict(_maybe_shuffled(batch, shuffle_seed), text_cache):
            preds.append(pred)
            answers.append(normalize_answer(q["answer"]))
            kinds.append(q.get("answer_type") or "all")
    result = qa_accuracy(preds, answers, kinds)
    result["in_vocab_fraction"] = 100.0 * sum(a in task.vocab.index for a in answers) / len(answers)
    return result


def evaluate_multiple_choice(task: MultipleChoice, batches, *, shuffle_seed: int | None = None,
                             text_cache: dict | None = None) -> dict:
    task.eval()
    all_scores, answers = [], []
    with torch.no_grad():
        for batch in tqdm(batches, desc="multiple choice", leave=False):
            scores, questions = task.option_scores(_maybe_shuffled(batch, shuffle_seed), text_cache)
            for s, q in zip(scores, questions):
                all_scores.append(s.float().cpu())
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
