"""Shuffle test permutations and the QA answer vocabulary."""

import pytest
import torch

from train.tasks import AnswerVocab, option_texts
from eval.shuffle import clip_permutation, shuffle_drop, shuffle_frames


def test_permutation_is_fixed_per_clip_and_never_identity():
    for t in (2, 3, 4, 8):
        for key in ("clip_00001", "clip_00002", "a", "b", "c"):
            p = clip_permutation(key, t, seed=7)
            assert sorted(p.tolist()) == list(range(t))
            assert p.tolist() != list(range(t))
            assert torch.equal(p, clip_permutation(key, t, seed=7))
    # different clips / seeds give different orders (not one global permutation)
    perms = {tuple(clip_permutation(f"clip_{i}", 8, seed=0).tolist()) for i in range(20)}
    assert len(perms) > 10
    assert clip_permutation("x", 1, seed=0).tolist() == [0]


def test_shuffle_frames_moves_frames_not_pixels():
    video = torch.arange(2 * 4).float().view(2, 4, 1, 1, 1).expand(2, 4, 3, 2, 2).contiguous()
    keys = ["clip_a", "clip_b"]
    out = shuffle_frames(video, keys, seed=3)
    for b, key in enumerate(keys):
        perm = clip_permutation(key, 4, seed=3)
        assert torch.equal(out[b], video[b, perm])
    assert not torch.equal(out, video)
    # the same frames, only reordered: a time-agnostic mean is unchanged
    assert torch.allclose(out.mean(dim=1), video.mean(dim=1))
    # independent of batch composition
    single = shuffle_frames(video[1:], keys[1:], seed=3)
    assert torch.equal(single[0], out[1])
    with pytest.raises(ValueError):
        shuffle_frames(video, ["only_one"], seed=3)


def test_shuffle_drop():
    normal = {"accuracy": 60.0, "num_questions": 10, "per_type": {"a": 50.0}}
    shuffled = {"accuracy": 45.0, "num_questions": 10, "per_type": {"a": 50.0}}
    assert shuffle_drop(normal, shuffled) == {"accuracy": 15.0, "per_type": {"a": 0.0}}


def test_vocab_most_frequent_with_stable_ties(tmp_path):
    answers = ["dog", "cat", "Dog ", "red", "cat", "blue", "dog", "zebra"]
    v = AnswerVocab.from_training_answers(answers, 3)
    assert v.answers == ["dog", "cat", "blue"]  # dog 3, cat 2, then ties by name: blue < red < zebra
    assert v.label("DOG") == 0 and v.label("red") == -1  # outside the vocabulary
    v.save(tmp_path / "train_ans2label.json")
    assert AnswerVocab.load(tmp_path / "train_ans2label.json").answers == v.answers
    (tmp_path / "bad.json").write_text('{"a": 0, "b": 5}')
    with pytest.raises(ValueError, match="labels 0..N-1"):
        AnswerVocab.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="train_ans2label"):
        AnswerVocab.load(tmp_path / "missing.json")


def test_option_texts():
    q = {"question": "what does he do?", "options": ["nod", " clap"]}
    assert option_texts(q) == ["what does he do? nod", "what does he do? clap"]
