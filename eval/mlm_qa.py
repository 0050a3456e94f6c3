"""Zero-shot open-ended QA through the pre-trained MLM head (LAVENDER's "MLM as the interface",
FrozenBiLM's masked-answer inference): no classifier is trained.

For each question and each answer length k (in WordPiece tokens) the prompt
``eval.qa.mlm_template`` with ``{mask}`` replaced by k [MASK] tokens is encoded, fused with the
video and read by the MLM head at the k masked positions, all in one pass (no left-to-right
decoding). An answer of k tokens t_1..t_k scores the mean over j of log p(t_j at mask j); the
answer with the highest score over the candidate list is the prediction. The mean (not the sum)
keeps long answers from losing merely for having more tokens.

Fill-in-the-blank (LSMDC-FiB): a question holding the blank ``_____`` is its own prompt, the
[MASK]s put where the blank is (the template is not applied).

Candidates: the same answer vocabulary the fine-tuned classifier uses (the ``finetune.qa.vocab_size``
most frequent training answers), so the zero-shot row and the fine-tuned row choose from one list and
``in_vocab_fraction`` (the coverage of test answers) is the same for both.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from tqdm import tqdm

from eval.ensemble import FrameEnsemble
from eval.metrics import qa_accuracy
from eval.shuffle import shuffle_frames
from eval.video_memo import VideoMemo
from train.data import text
from train.tasks import batch_open_ended_questions, normalize_answer, open_ended_questions

DEFAULT_TEMPLATE = "question: {question} answer: {mask}"
FIB_BLANK = "_____"  # LSMDC16's blank, as preprocess/formats.py reads it (a test holds them equal)


def check_template(template: str) -> None:
    if "{question}" not in template or "{mask}" not in template:
        raise ValueError(f"eval.qa.mlm_template {template!r} must contain {{question}} and {{mask}}")


class MLMAnswerScorer:
    """Scores a fixed answer list for questions about videos with the model's MLM head."""

    def __init__(self, model, tokenizer, answers: list[str], *, max_len: int, template: str = DEFAULT_TEMPLATE):
        if getattr(model, "mlm_head", None) is None:
            raise ValueError("zero-shot MLM QA needs a model with an MLM head (objectives.mlm > 0)")
        check_template(template)
        if not answers:
            raise ValueError("zero-shot MLM QA needs at least one candidate answer")
        self.model, self.tokenizer, self.max_len, self.template = model, tokenizer, max_len, template
        self.answers = list(answers)
        self.index = {a: i for i, a in enumerate(self.answers)}
        # answers grouped by their token count: one prompt per count
        self.by_length: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
        for i, a in enumerate(self.answers):
            ids = tokenizer(a, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"answer {a!r} has no token")
            self.by_length[len(ids)].append((i, ids))

    def prompt(self, question: str, length: int) -> str:
        masks = " ".join([self.tokenizer.mask_token] * length)
        if FIB_BLANK in question:  # fill-in-the-blank: the sentence is the prompt
            return question.strip().replace(FIB_BLANK, masks, 1)
        return self.template.format(question=question.strip(), mask=masks)

    @torch.no_grad()
    def scores(self, video_tokens: torch.Tensor, owners: list[int], questions: list[str]) -> torch.Tensor:
        """[M, A] scores of every candidate for M questions; ``owners[m]`` indexes video_tokens.
        A candidate whose masks the prompt lost to truncation scores -inf."""
        device = video_tokens.device
        out = torch.full((len(questions), len(self.answers)), float("-inf"))
        mask_id = self.tokenizer.mask_token_id
        for length, cands in sorted(self.by_length.items()):
            prompts = [self.prompt(q, length) for q in questions]
            ids, mask = text.tokenize(self.tokenizer, prompts, self.max_len, longest=True)
            ids, mask = ids.to(device), mask.to(device)
            hidden, _ = self.model.encode_text(ids, mask)
            fused = self.model.fuse(hidden, mask, video_tokens[torch.as_tensor(owners, device=device)])
            is_mask = ids == mask_id
            complete = is_mask.sum(1) == length
            if not bool(complete.any()):
                continue
            rows = complete.nonzero().squeeze(1)
            logp = torch.log_softmax(self.model.mlm_head(fused[rows][is_mask[rows]]).float(), -1)
            logp = logp.view(len(rows), length, -1).cpu()  # [m, k, vocab]
            cand_ids = torch.tensor([c[1] for c in cands])  # [c, k]
            picked = logp[:, torch.arange(length)[None, :], cand_ids]  # [m, c, k]
            out[rows.cpu()[:, None], torch.tensor([c[0] for c in cands])[None, :]] = picked.mean(-1)
        return out


def test_answers(batches) -> list[str]:
    """The distinct normalised answers of a test set, sorted: the closed word list a zero-shot
    fill-in-the-blank chooses from (the test file's answer set, no training vocabulary)."""
    answers = sorted({normalize_answer(q["answer"]) for b in batches for m in b["meta"]
                      for q in open_ended_questions(m)})
    if not answers:
        raise ValueError("the fill-in-the-blank test set has no answer")
    return answers


def evaluate_mlm_qa(scorer: MLMAnswerScorer, batches, *, shuffle_seed: int | None = None,
                    ensemble: FrameEnsemble | None = None, sparsify: bool = True,
                    video_memo: VideoMemo | None = None) -> dict:
    """Accuracy of the MLM head's answers (eval/ensemble.py combines the frame groups' scores;
    ``video_memo`` keeps encoded clips between tests of the same model on the same clips)."""
    video_memo = VideoMemo() if video_memo is None else video_memo  # an empty memo is falsy
    ensemble = ensemble or FrameEnsemble()
    model = scorer.model
    model.eval()
    device = next(model.parameters()).device
    preds, answers, kinds = [], [], []
    with torch.no_grad():
        for batch in tqdm(batches, desc="zero-shot MLM QA", leave=False):
            owners, items = batch_open_ended_questions(batch)
            questions = [q["question"] for q in items]
            if not items:
                continue
            video = batch["video"].to(device)
            if shuffle_seed is not None:
                video = shuffle_frames(video, batch["key"], shuffle_seed)
            per_group = []
            for clip in ensemble.split(video):
                tokens, _ = video_memo.encode(model, clip, sparsify=sparsify)
                per_group.append(scorer.scores(tokens, owners, questions))
            for p, q in zip(ensemble.combine(per_group).argmax(1).tolist(), items):
                preds.append(scorer.answers[p])
                answers.append(normalize_answer(q["answer"]))
                kinds.append(q.get("answer_type") or "all")
    if not answers:
        raise ValueError("the open-ended QA test set has no question")
    result = qa_accuracy(preds, answers, kinds)
    result["in_vocab_fraction"] = 100.0 * sum(a in scorer.index for a in answers) / len(answers)
    result["candidates"] = len(scorer.answers)
    result["max_answer_tokens"] = max(scorer.by_length)
    # always the most frequent test answer: the floor a blank-filler must beat
    top = min(set(answers), key=lambda a: (-answers.count(a), a))  # ties: alphabetically first
    result["majority"] = {"answer": top, "accuracy": 100.0 * answers.count(top) / len(answers)}
    return result
