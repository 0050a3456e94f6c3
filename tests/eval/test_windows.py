"""A long test video is sharded as windows (<key>_w000 ...), each with the video's captions: retrieval
scores the video once, its captions queried once, its windows pooled into one candidate."""

import copy

import pytest
import torch

from eval.retrieval import candidate_of, embed_retrieval_set, evaluate_retrieval
from tests.eval.conftest import tiny_model_and_batches


@pytest.fixture(scope="module")
def tiny(workspace, shard_root):
    model, tok, batches = tiny_model_and_batches(workspace, shard_root / "ret_test", "caption", batch_size=4)
    return model, batches, tok


def as_windows(batches: list[dict], video: str, count: int) -> list[dict]:
    """The first ``count`` samples relabelled as the windows of one long ``video`` (its captions
    those of the first), as preprocess writes a video longer than max_window_s."""
    batches = copy.deepcopy(batches)
    flat = [(b, i) for b in batches for i in range(len(b["key"]))][:count]
    captions = flat[0][0]["meta"][flat[0][1]]["captions"]
    for n, (b, i) in enumerate(flat):
        b["key"][i] = f"{video}_w{n:03d}"
        meta = b["meta"][i]
        meta.update(key=b["key"][i], captions=list(captions))
        meta.setdefault("normalize", {})["window"] = {"index": n, "count": count, "start": 30.0 * n}
    return batches


def test_windows_name_their_video_and_a_plain_key_is_its_own():
    window = {"normalize": {"window": {"index": 1, "count": 3}}}
    assert candidate_of(window, "long_w001") == "long"
    assert candidate_of({"normalize": {"window": {"index": 1000, "count": 1200}}}, "day_w1000") == "day"
    assert candidate_of({"normalize": {"window": None}}, "clip_w001") == "clip_w001"  # an id, not a window
    assert candidate_of({}, "clip") == "clip"


def test_a_long_videos_windows_are_one_candidate_queried_once(tiny):
    model, batches, tok = tiny
    plain = embed_retrieval_set(model, batches, tok, max_len=16)
    originals = [k for b in batches for k in b["key"]][:3]
    caps = {k: [t for t, v in zip(plain.texts, plain.text_to_video) if plain.keys[v] == k] for k in originals}
    windowed = as_windows(batches, "long", 3)
    long = embed_retrieval_set(model, windowed, tok, max_len=16)
    assert len(long.keys) == len(plain.keys) - 2 and "long" in long.keys
    assert not [k for k in long.keys if k.startswith("long_w")]
    v = long.keys.index("long")
    # the video's captions are queried once, not once per window
    assert [t for t, o in zip(long.texts, long.text_to_video) if o == v] == caps[originals[0]]
    assert len(long.texts) == len(plain.texts) - len(caps[originals[1]]) - len(caps[originals[2]])
    # its candidate is the mean of the windows' normalised features, normalised again
    mean = torch.stack([plain.video_feats[plain.keys.index(k)] for k in originals]).mean(0)
    assert torch.allclose(long.video_feats[v], mean / mean.norm(), atol=1e-5)
    # every other video is as it was
    for k in long.keys:
        if k != "long":
            assert torch.equal(long.video_feats[long.keys.index(k)], plain.video_feats[plain.keys.index(k)])
    res = evaluate_retrieval(model, windowed, tok, max_len=16)
    assert res["num_videos"] == len(plain.keys) - 2 and res["chance_R@1"] == pytest.approx(100 / res["num_videos"])
