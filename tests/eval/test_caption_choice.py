"""Zero-shot caption multiple choice (eval/caption_choice.py) and the shared video memo
(eval/video_memo.py) on a tiny random-weight model and the real tiny shards."""

import pytest
import torch

from eval.caption_choice import evaluate_caption_choice
from eval.ensemble import FrameEnsemble
from eval.video_memo import VideoMemo
from tests.eval.conftest import tiny_model_and_batches


@pytest.fixture(scope="module")
def tiny(workspace, shard_root):
    return tiny_model_and_batches(workspace, shard_root / "mc_caption_test", "caption", batch_size=4)


def _one_by_one(model, tok, batches):
    """Accuracy by VTM and by VTC with each (clip, candidate) scored alone, and the VTM scores."""
    vtm, vtc, answers = [], [], []
    with torch.no_grad():
        for b in batches:
            for i, meta in enumerate(b["meta"]):
                tokens, vfeat = model.encode_video(b["video"][i:i + 1], mask=False)
                q = meta["qa"][0]
                enc = tok(list(q["options"]), return_tensors="pt", padding=True)
                hidden, tfeat = model.encode_text(enc["input_ids"], enc["attention_mask"])
                fused = model.fuse(hidden, enc["attention_mask"], tokens.expand(len(q["options"]), -1, -1))
                vtm.append(model.vtm_score(fused))
                vtc.append(tfeat @ vfeat[0])
                answers.append(q["answer_idx"])
    def acc(scores):
        return 100.0 * sum(int(s.argmax()) == a for s, a in zip(scores, answers)) / len(answers)
    return acc(vtm), acc(vtc), vtm


def test_accuracy_equals_scoring_each_candidate_alone(tiny):
    model, tok, batches = tiny
    got = evaluate_caption_choice(model, tok, batches, max_len=16)
    want_vtm, want_vtc, scores = _one_by_one(model, tok, batches)
    assert got["num_questions"] == 6 and got["chance"] == pytest.approx(20.0)
    assert got["accuracy_vtm"] == pytest.approx(want_vtm) and got["accuracy_vtc"] == pytest.approx(want_vtc)
    assert got["accuracy"] == got["accuracy_vtc"] and got["scored_by"] == "vtc"  # VTM beside, not the headline
    assert len({round(float(s.max() - s.min()), 6) for s in scores}) > 1  # the scores do differ


def test_video_memo_encodes_each_clip_once_and_changes_nothing(tiny):
    model, tok, batches = tiny
    memo = VideoMemo()
    plain = evaluate_caption_choice(model, tok, batches, max_len=16)
    first = evaluate_caption_choice(model, tok, batches, max_len=16, video_memo=memo)
    assert len(memo) == 6 and first == plain
    calls = []
    real = model.encode_video
    model.encode_video = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        again = evaluate_caption_choice(model, tok, batches, max_len=16, video_memo=memo)
    finally:
        del model.encode_video
    assert calls == [] and again == plain
    video = batches[0]["video"]
    tokens, feats = memo.encode(model, video)
    direct_tokens, direct_feats = model.encode_video(video, mask=False)
    assert torch.allclose(tokens, direct_tokens, atol=1e-5) and torch.allclose(feats, direct_feats, atol=1e-5)


def test_a_frame_ensemble_combines_the_groups(tiny):
    model, tok, batches = tiny
    got = evaluate_caption_choice(model, tok, batches, max_len=16, ensemble=FrameEnsemble("mean", 2))
    assert got["num_questions"] == 6 and 0 <= got["accuracy"] <= 100
