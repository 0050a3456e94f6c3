"""Zero-shot open-ended QA through the MLM head (eval/mlm_qa.py) on a tiny random-weight model."""

import pytest
import torch

from eval.mlm_qa import MLMAnswerScorer, evaluate_mlm_qa
from tests.eval.conftest import tiny_model_and_batches


@pytest.fixture(scope="module")
def tiny(workspace, shard_root):
    return tiny_model_and_batches(workspace, shard_root / "qa_test", "question", batch_size=3)


ANSWERS = ["red", "blue", "green", "left", "right", "spins", "counterclockwise"]


def test_answers_of_several_tokens_are_scored(tiny):
    _, tok, _ = tiny
    lengths = {a: len(tok(a, add_special_tokens=False)["input_ids"]) for a in ANSWERS}
    assert lengths["red"] == 1 and lengths["counterclockwise"] > 1  # the test covers both kinds


def test_scores_equal_the_mean_log_prob_at_the_masks_one_by_one(tiny):
    """The batched scorer against each (question, answer) scored alone."""
    model, tok, batches = tiny
    scorer = MLMAnswerScorer(model, tok, ANSWERS, max_len=16)
    batch = batches[0]
    tokens, _ = model.encode_video(batch["video"], mask=False)
    # the first question of the first and the second clip: two videos, two questions
    qs = [batch["meta"][i]["qa"][i]["question"] for i in (0, 1)]
    owners = [0, 1]
    got = scorer.scores(tokens, owners, qs)
    with torch.no_grad():
        for m, (q, o) in enumerate(zip(qs, owners)):
            for a, answer in enumerate(ANSWERS):
                if answer not in ("red", "spins", "counterclockwise"):
                    continue
                ids_a = tok(answer, add_special_tokens=False)["input_ids"]
                prompt = f"question: {q} answer: " + " ".join([tok.mask_token] * len(ids_a))
                enc = tok([prompt], return_tensors="pt")
                hidden, _ = model.encode_text(enc["input_ids"], enc["attention_mask"])
                fused = model.fuse(hidden, enc["attention_mask"], tokens[o:o + 1])
                where = (enc["input_ids"][0] == tok.mask_token_id).nonzero().squeeze(1)
                logp = torch.log_softmax(model.mlm_head(fused[0, where]), -1)
                want = sum(float(logp[j, t]) for j, t in enumerate(ids_a)) / len(ids_a)
                assert float(got[m, a]) == pytest.approx(want, abs=1e-4), (q, answer)


@pytest.mark.parametrize("preferred", ["blue", "counterclockwise"])
def test_the_answer_the_mlm_head_prefers_wins(tiny, preferred):
    """Raise the head's output bias on the preferred answer's tokens: every question gets it."""
    model, tok, batches = tiny
    bias = model.mlm_head.bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias[tok(preferred, add_special_tokens=False)["input_ids"]] += 50.0
        result = evaluate_mlm_qa(MLMAnswerScorer(model, tok, ANSWERS, max_len=16), batches)
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    answers = [q["answer"] for b in batches for m in b["meta"] for q in m["qa"]]
    expected = 100.0 * sum(a == preferred for a in answers) / len(answers)
    assert result["accuracy"] == pytest.approx(expected)
    assert result["candidates"] == len(ANSWERS) and result["max_answer_tokens"] > 1


def test_bad_input_is_refused(tiny):
    model, tok, _ = tiny
    with pytest.raises(ValueError, match="must contain"):
        MLMAnswerScorer(model, tok, ANSWERS, max_len=16, template="Q: {question}")
    with pytest.raises(ValueError, match="at least one candidate"):
        MLMAnswerScorer(model, tok, [], max_len=16)


def test_fill_in_the_blank_puts_the_masks_where_the_blank_is(tiny):
    """LSMDC-FiB: the sentence is the prompt, the template is not applied."""
    model, tok, _ = tiny
    scorer = MLMAnswerScorer(model, tok, ANSWERS, max_len=16)
    assert scorer.prompt("a _____ circle spins", 2) == "a [MASK] [MASK] circle spins"
    assert scorer.prompt("what is it?", 1) == "question: what is it? answer: [MASK]"


def test_fill_in_the_blank_answer_list_is_the_test_sets_own():
    from eval.mlm_qa import test_answers as answer_list

    batches = [{"meta": [{"qa": [{"question": "a _____ circle", "answer": "Red"}]},
                         {"qa": [{"question": "pick one", "answer": "x", "options": ["x", "y"]}]}]},
               {"meta": [{"qa": [{"question": "a blue _____", "answer": "square "}]}, {"qa": None}]}]
    assert answer_list(batches) == ["red", "square"]  # normalised, choice questions left out
    with pytest.raises(ValueError, match="no answer"):
        answer_list([{"meta": [{"qa": None}]}])
