"""Metrics against hand-computed cases, ties included."""

import pytest
import torch

from eval.metrics import (choice_accuracy, majority_baseline, qa_accuracy, ranks_from_scores, recall_summary,
                          retrieval_metrics)


def test_rank_of_single_correct_item():
    scores = torch.tensor([[0.9, 0.1, 0.5],   # correct 0 is best -> rank 1
                           [0.9, 0.1, 0.5],   # correct 1 is last -> rank 3
                           [0.9, 0.1, 0.5]])  # correct 2 is second -> rank 2
    correct = torch.eye(3, dtype=torch.bool)
    assert ranks_from_scores(scores, correct).tolist() == [1, 3, 2]


def test_ties_count_against_the_query():
    # the correct item ties with one wrong item: pessimistic rank 2, not 1
    scores = torch.tensor([[0.5, 0.5, 0.1]])
    correct = torch.tensor([[True, False, False]])
    assert ranks_from_scores(scores, correct).tolist() == [2]
    # a constant scorer puts every query at the bottom
    flat = torch.zeros(4, 4)
    assert ranks_from_scores(flat, torch.eye(4, dtype=torch.bool)).tolist() == [4, 4, 4, 4]


def test_other_correct_items_do_not_count_against():
    # two correct captions; the best one (0.8) has one wrong item above it -> rank 2
    scores = torch.tensor([[0.8, 0.9, 0.7, 0.3]])
    correct = torch.tensor([[True, False, True, False]])
    assert ranks_from_scores(scores, correct).tolist() == [2]


def test_recall_summary_by_hand():
    ranks = [1, 2, 6, 11, 3]
    s = recall_summary(ranks)
    assert s["R@1"] == pytest.approx(20.0)
    assert s["R@5"] == pytest.approx(60.0)
    assert s["R@10"] == pytest.approx(80.0)
    assert s["MdR"] == 3.0
    assert s["MnR"] == pytest.approx(23 / 5)
    assert s["num_queries"] == 5
    assert recall_summary([1, 4])["MdR"] == 2.5  # even count: mean of the middle two


def test_multi_caption_t2v_and_v2t():
    # 2 videos, 3 texts: texts 0,1 describe video 0, text 2 describes video 1
    sim = torch.tensor([[0.9, 0.1],    # t0 -> v0 rank 1
                        [0.2, 0.8],    # t1 -> v0 rank 2
                        [0.3, 0.3]])   # t2 -> v1 tie -> rank 2
    m = retrieval_metrics(sim, [0, 0, 1])
    assert m["t2v"]["R@1"] == pytest.approx(100 / 3)
    assert m["t2v"]["MdR"] == 2.0
    # v2t: v0 column [0.9, 0.2, 0.3]: best caption t0 (0.9) beats the wrong t2 -> rank 1
    #      v1 column [0.1, 0.8, 0.3]: its caption t2 (0.3) has wrong t1 (0.8) above -> rank 2
    assert m["v2t"]["R@1"] == pytest.approx(50.0)
    assert m["v2t"]["MnR"] == pytest.approx(1.5)
    assert m["v2t"]["num_queries"] == 2 and m["t2v"]["num_queries"] == 3


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="no correct candidate"):
        ranks_from_scores(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(torch.tensor([[float("nan"), 0.0]]), torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match="text_to_video"):
        retrieval_metrics(torch.zeros(3, 2), [0, 1])


def test_qa_accuracy_per_answer_type():
    preds = ["red", "two", "dog", "blue", "cat"]
    answers = ["red", "three", "dog", "green", "unseen-answer"]
    kinds = ["color", "count", "what", "color", "what"]
    r = qa_accuracy(preds, answers, kinds)
    assert r["accuracy"] == pytest.approx(40.0)
    assert r["per_type"] == {"color": pytest.approx(50.0), "count": 0.0, "what": pytest.approx(50.0)}
    assert r["per_type_count"] == {"color": 2, "count": 1, "what": 2}


def test_choice_accuracy_picks_the_argmax_option():
    scores = [[0.1, 2.0, -1.0, 0.0, 0.5],   # -> 1 (right)
              [3.0, 2.0, 1.0, 0.0, 4.0],    # -> 4 (wrong, answer 0)
              [1.0, 1.0, 0.0, 0.0, 0.0]]    # tie -> lowest index 0 (right)
    r = choice_accuracy(scores, [1, 0, 0])
    assert r["accuracy"] == pytest.approx(200 / 3)


def test_majority_baseline():
    r = majority_baseline(["a", "b", "b", "c", "a", "b"], ["b", "a", "b", "c"])
    assert r == {"answer": "b", "accuracy": 50.0}
    # frequency ties go to the alphabetically first answer, so the baseline is deterministic
    assert majority_baseline(["y", "x"], ["x"])["answer"] == "x"


def test_rounding_keeps_the_settings_as_they_are(workspace):
    """The provenance of a result names the settings that made it: a fine-tuning lr of 5e-5 is
    not rounded to 1e-4 with the metrics."""
    import json

    from eval.evaluate import evaluate_recipe

    params = workspace["params"]("finetune.qa.lr=5e-5", "eval.tasks=[retrieval]", "eval.shuffle_test=false")
    out = evaluate_recipe(params, "smaug")
    assert out["params"]["finetune"]["qa"]["lr"] == 5e-5
    written = json.loads((workspace["base"] / "results/eval/smaug.json").read_text())
    assert written["params"]["finetune"]["qa"]["lr"] == 5e-5
    vtc = written["zero_shot"]["retrieval"]["normal"]["vtc"]["t2v"]
    assert all(round(v, 4) == v for v in vtc.values() if isinstance(v, float))  # the metrics still are
