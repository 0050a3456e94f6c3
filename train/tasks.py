"""Fine-tuning task heads: open-ended QA as classification, multiple choice by VTM.

Open-ended (MSRVTT-QA, MSVD-QA, TGIF FrameQA) follows ClipBERT/ALPRO: the answer space is
the ``vocab_size`` most frequent answers of the training split; a small MLP on the fused
[CLS] state of question+video picks one. A test answer outside that vocabulary can never
be predicted, so it counts as wrong (accuracy is over *all* test questions).

Multiple choice (TGIF Action / Transition, MSRVTT-MC): each option is appended to the
question, the pair (question + option, video) goes through the fusion encoder and the VTM
head, and the option with the highest match logit is the answer. This needs no new
parameters, so it works zero-shot; fine-tuning trains the same head with a cross-entropy
over the options' logits.

The task modules wrap the pre-trained model and return ``TaskOutput`` (loss, losses,
stats) like the model's own forward, so the trainer's loop trains them unchanged.
:mod:`train.finetune` trains them; :mod:`eval.qa` scores them.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from train.data import text

log = logging.getLogger("train.tasks")


# --------------------------------------------------------------------------- answer vocabulary


class AnswerVocab:
    """The classifier's answer space: the most frequent training answers.

    Order: by frequency, ties by the answer string, so the same training set always gives
    the same label ids. Stored as ``{"answer": label}`` (ClipBERT's train_ans2label.json).
    """

    def __init__(self, answers: Sequence[str]):
        if not answers:
            raise ValueError("an answer vocabulary needs at least one answer")
        if len(set(answers)) != len(answers):
            raise ValueError("answer vocabulary has duplicates")
        self.answers = list(answers)
        self.index = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def from_training_answers(cls, answers: Iterable[str], size: int) -> "AnswerVocab":
        if size < 1:
            raise ValueError(f"vocabulary size must be >= 1, got {size}")
        counts = Counter(normalize_answer(a) for a in answers)
        ranked = sorted(counts, key=lambda a: (-counts[a], a))
        return cls(ranked[:size])

    def __len__(self) -> int:
        return len(self.answers)

    def label(self, answer: str) -> int:
        """Label id, or -1 for an answer outside the vocabulary."""
        return self.index.get(normalize_answer(answer), -1)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.index, indent=0, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "AnswerVocab":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: answer vocabulary (train_ans2label.json: {{answer: label}}) not found")
        mapping = json.loads(path.read_text())
        if not isinstance(mapping, dict) or sorted(mapping.values()) != list(range(len(mapping))):
            raise ValueError(f"{path}: expected {{answer: label}} with labels 0..N-1")
        return cls([a for a, _ in sorted(mapping.items(), key=lambda kv: kv[1])])


def normalize_answer(answer: str) -> str:
    return " ".join(str(answer).lower().strip().split())


# What VQA-style normalisation would also fold together. normalize_answer stays as it is (ClipBERT's:
# the committed results' label ids depend on it); these only find answers that may be one class.
ARTICLES = ("a", "an", "the")
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))}
PUNCTUATION = re.compile(r"(?<!\d)[^\w\s]|[^\w\s](?!\d)")  # a mark, unless between digits (2.5, 1,000)
SHOWN_GROUPS = 5


def loose_answer_key(answer: str) -> str:
    """``answer`` without punctuation, a leading article or number words (zero..ten as digits):
    'The dog.' -> 'dog', 'two' -> '2'. Empty for an answer that is only punctuation or symbols."""
    words = PUNCTUATION.sub("", normalize_answer(answer)).split()
    if len(words) > 1 and words[0] in ARTICLES:
        words = words[1:]
    return " ".join(NUMBER_WORDS.get(w, w) for w in words)


def similar_answer_groups(answers: Sequence[str]) -> list[list[str]]:
    """The answers of ``answers`` (an answer vocabulary) that differ only by punctuation, a
    leading article or number words vs digits, in groups: each group sorted, the groups in the
    order of their first answer in ``answers`` (the vocabulary's: most frequent first)."""
    groups: dict[str, list[str]] = {}
    for answer in answers:
        key = loose_answer_key(answer)
        if key:  # emoji and the like have no words to compare: never one group
            groups.setdefault(key, []).append(answer)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def warn_similar_answers(answers: Sequence[str]) -> str | None:
    """Log one warning naming up to SHOWN_GROUPS groups of similar_answer_groups, and return it
    (None when there are none). Each answer of a group is its own class: the classifier splits
    its training questions between them and a test answer counts wrong against the others."""
    groups = similar_answer_groups(answers)
    if not groups:
        return None
    shown = "; ".join(" / ".join(repr(a) for a in group) for group in groups[:SHOWN_GROUPS])
    more = f" (and {len(groups) - SHOWN_GROUPS} more groups)" if len(groups) > SHOWN_GROUPS else ""
    message = (f"QA answers that may be one class: {shown}{more} — normalize_answer only lowercases and "
               "collapses spaces, so each is its own class")
    log.warning("%s", message)
    return message


def open_ended_questions(meta: dict) -> list[dict]:
    """The sample's open-ended questions (entries without options)."""
    return [q for q in meta.get("qa") or [] if not q.get("options")]


def batch_open_ended_questions(batch: dict) -> tuple[list[int], list[dict]]:
    """The batch's open-ended questions, flattened: (index of the owning clip, question) pairs."""
    owners, questions = [], []
    for i, meta in enumerate(batch["meta"]):
        for q in open_ended_questions(meta):
            owners.append(i)
            questions.append(q)
    return owners, questions


def choice_questions(meta: dict) -> list[dict]:
    return [q for q in meta.get("qa") or [] if q.get("options")]


def option_texts(question: dict) -> list[str]:
    """'question + option' strings, one per option, the text the VTM head scores."""
    return [f"{question['question'].strip()} {str(opt).strip()}" for opt in question["options"]]


@dataclass
class TaskOutput:
    """Same fields as the model's ModelOutput, so the trainer treats both alike."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


def text_hidden_size(model, tokenizer) -> int:
    ids, mask = text.tokenize(tokenizer, ["probe"], 8, longest=True)
    with torch.no_grad():
        hidden, _ = model.encode_text(ids, mask)
    return int(hidden.shape[-1])


def _fuse_per_question(model, video_tokens: torch.Tensor, owners: list[int], texts: list[str], tokenizer,
                       max_len: int, text_cache: dict | None = None) -> torch.Tensor:
    """Fused states [M, L, Dt] of each text with the video it belongs to.

    ``text_cache`` (evaluation only): text encodings by text list, so a second pass over the
    same questions (the shuffle test) encodes only the videos again.
    """
    key = tuple(texts)
    if text_cache is not None and key in text_cache:
        hidden, mask = text_cache[key]
    else:
        ids, mask = text.tokenize(tokenizer, texts, max_len, longest=True)
        ids, mask = ids.to(video_tokens.device), mask.to(video_tokens.device)
        hidden, _ = model.encode_text(ids, mask)
        if text_cache is not None:
            text_cache[key] = (hidden, mask)
    return model.fuse(hidden, mask, video_tokens[torch.as_tensor(owners, device=video_tokens.device)])


# --------------------------------------------------------------------------- open-ended QA


class QAHead(nn.Module):
    """MLP classifier on the fused [CLS] state (ClipBERT/ALPRO: hidden -> 2*hidden -> answers)."""

    def __init__(self, hidden: int, num_answers: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden * 2), nn.GELU(), nn.LayerNorm(hidden * 2),
                                 nn.Linear(hidden * 2, num_answers))

    def reset_parameters(self) -> None:
        for layer in self.net:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def forward(self, cls_state: torch.Tensor) -> torch.Tensor:  # [M, Dt] -> [M, V]
        return self.net(cls_state)


class OpenEndedQA(nn.Module):
    """Pre-trained model + answer classifier; forward(batch) -> TaskOutput (cross-entropy)."""

    def __init__(self, model: nn.Module, vocab: AnswerVocab, tokenizer, max_len: int):
        super().__init__()
        self.model = model
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.head = QAHead(text_hidden_size(model, tokenizer), len(vocab))

    def logits(self, batch: dict, text_cache: dict | None = None) -> tuple[torch.Tensor, list[dict]]:
        owners, questions = batch_open_ended_questions(batch)
        texts = [q["question"] for q in questions]
        if not questions:
            return torch.zeros(0, len(self.vocab)), []
        video = batch["video"].to(next(self.parameters()).device)
        tokens, _ = self.model.encode_video(video, mask=False)
        fused = _fuse_per_question(self.model, tokens, owners, texts, self.tokenizer, self.max_len, text_cache)
        return self.head(fused[:, 0]), questions

    def forward(self, batch: dict) -> TaskOutput:
        logits, questions = self.logits(batch)
        labels = torch.tensor([self.vocab.label(q["answer"]) for q in questions], dtype=torch.long,
                              device=logits.device)
        known = labels >= 0  # out-of-vocabulary answers cannot be learned; ClipBERT drops them
        if not bool(known.any()):  # nothing to learn here; a zero loss that still has a graph
            loss = sum(p.sum() for p in self.head.parameters()) * 0.0
        else:
            loss = F.cross_entropy(logits[known], labels[known])
        return TaskOutput(loss, {"qa_ce": loss.detach()}, {"questions": float(len(questions))})

    @torch.no_grad()
    def predict(self, batch: dict, text_cache: dict | None = None) -> list[tuple[str, dict]]:
        logits, questions = self.logits(batch, text_cache)
        preds = logits.argmax(dim=1).tolist() if len(questions) else []
        return [(self.vocab.answers[p], q) for p, q in zip(preds, questions)]


# --------------------------------------------------------------------------- multiple choice


class MultipleChoice(nn.Module):
    """Scores question+option pairs with the model's VTM head; forward(batch) -> TaskOutput."""

    def __init__(self, model: nn.Module, tokenizer, max_len: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = max_len

    def option_scores(self, batch: dict, text_cache: dict | None = None) -> tuple[list[torch.Tensor], list[dict]]:
        owners, texts, questions, sizes = [], [], [], []
        for i, meta in enumerate(batch["meta"]):
            for q in choice_questions(meta):
                opts = option_texts(q)
                owners += [i] * len(opts)
                texts += opts
                sizes.append(len(opts))
                questions.append(q)
        if not questions:
            return [], []
        video = batch["video"].to(next(self.parameters()).device)
        tokens, _ = self.model.encode_video(video, mask=False)
        fused = _fuse_per_question(self.model, tokens, owners, texts, self.tokenizer, self.max_len, text_cache)
        scores = self.model.vtm_score(fused)
        return list(torch.split(scores, sizes)), questions

    def forward(self, batch: dict) -> TaskOutput:
        scores, questions = self.option_scores(batch)
        losses = [F.cross_entropy(s[None], torch.tensor([int(q["answer_idx"])], device=s.device))
                  for s, q in zip(scores, questions)]
        if not losses:
            raise ValueError("multiple-choice batch has no question with options")
        loss = torch.stack(losses).mean()
        return TaskOutput(loss, {"mc_ce": loss.detach()}, {"questions": float(len(questions))})


# --------------------------------------------------------------------------- loading


def load_task_model(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild whatever a checkpoint holds: the bare model (pre-training, retrieval
    fine-tuning) or a task module (open-ended QA, multiple choice). Returns (module, state).

    Fine-tuned checkpoints' state.json adds ``task`` (and ``answers`` for open-ended QA), so
    this rebuilds exactly the module that was trained; weights come from safetensors only.
    """
    from train.checkpoint import load_weights, model_config_of, read_state, resolve_checkpoint
    from train.data.text import load_tokenizer
    from train.model import SMAUG

    folder = resolve_checkpoint(folder)
    state = read_state(folder)
    cfg = model_config_of(state)
    model = SMAUG(cfg, video_init=False, text_weights=False)
    task = state.get("task")
    max_len = int(state.get("max_len") or cfg.text.max_len)
    if task == "qa":
        module: nn.Module = OpenEndedQA(model, AnswerVocab(state["answers"]), load_tokenizer(cfg.text.path), max_len)
    elif task == "mc":
        module = MultipleChoice(model, load_tokenizer(cfg.text.path), max_len)
    else:
        module = model
    load_weights(module, folder)
    module.to(map_location).eval()
    return module, state
