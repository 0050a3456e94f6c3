import numpy as np
import pytest

from train.data.sampling import STREAM_FRAMES, sample_frame_indices, sample_rng


@pytest.mark.parametrize("num_frames", [1, 5, 8, 13, 48, 301])
@pytest.mark.parametrize("count", [1, 4, 8])
def test_segments_stay_in_their_segment_and_cover_the_clip(num_frames, count):
    width = num_frames / count
    for seed in range(20):
        idx = sample_frame_indices(num_frames, count, "segments", train=True, rng=sample_rng(seed, 0, "k", STREAM_FRAMES))
        assert idx.shape == (count,) and idx.dtype == np.int64
        assert (idx >= 0).all() and (idx < num_frames).all()
        assert (np.diff(idx) >= 0).all()
        for i, v in enumerate(idx):
            # frame v lies in segment i: [floor(i*w), ceil((i+1)*w))
            assert np.floor(i * width) <= v < max(np.ceil((i + 1) * width), np.floor(i * width) + 1)
    if num_frames >= count:
        # across many draws every frame of the clip gets picked at least once
        seen = set()
        for seed in range(400):
            seen.update(sample_frame_indices(num_frames, count, "segments", train=True,
                                             rng=sample_rng(seed, 0, "k", STREAM_FRAMES)).tolist())
        if num_frames <= 48:
            assert seen == set(range(num_frames))


def test_eval_takes_segment_middles():
    idx = sample_frame_indices(48, 8, "segments", train=False, rng=None)
    assert idx.tolist() == [3, 9, 15, 21, 27, 33, 39, 45]
    assert sample_frame_indices(48, 1, "single", train=False, rng=None).tolist() == [24]


def test_same_seed_epoch_key_same_indices_and_changes_otherwise():
    draw = lambda seed, epoch, key: sample_frame_indices(  # noqa: E731
        300, 8, "segments", train=True, rng=sample_rng(seed, epoch, key, STREAM_FRAMES))
    np.random.seed(1)  # global state must not matter
    a = draw(0, 0, "clip_1")
    np.random.seed(2)
    assert np.array_equal(a, draw(0, 0, "clip_1"))
    assert not np.array_equal(a, draw(0, 1, "clip_1"))
    assert not np.array_equal(a, draw(1, 0, "clip_1"))
    assert not np.array_equal(a, draw(0, 0, "clip_2"))


def test_single_frame_mode_gives_one_frame():
    for seed in range(10):
        idx = sample_frame_indices(30, 8, "single", train=True, rng=sample_rng(seed, 0, "k", STREAM_FRAMES))
        assert idx.shape == (1,) and 0 <= idx[0] < 30


def test_contiguous_mode():
    for seed in range(20):
        idx = sample_frame_indices(40, 8, "contiguous", train=True, rng=sample_rng(seed, 0, "k", 1), stride=2)
        assert (np.diff(idx) == 2).all() and idx[0] >= 0 and idx[-1] < 40
    assert sample_frame_indices(40, 4, "contiguous", train=False, rng=None).tolist() == [18, 19, 20, 21]
    # shorter than the window: the last frame repeats
    assert sample_frame_indices(3, 5, "contiguous", train=False, rng=None).tolist() == [0, 1, 2, 2, 2]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="frames"):
        sample_frame_indices(0, 8, "segments", train=False, rng=None)
    with pytest.raises(ValueError, match="mode"):
        sample_frame_indices(10, 8, "dense", train=False, rng=None)
    with pytest.raises(ValueError, match="rng"):
        sample_frame_indices(10, 8, "segments", train=True, rng=None)
