"""studies/view: the frame-relative training box, the installed test view, and the paired
comparison of two evaluations of the same checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studies.view.compare import paired_gains
from studies.view.frames import frame_relative_box, install


def test_frame_relative_boxes_reach_the_whole_wide_frame():
    rng = np.random.default_rng(0)
    # scale 1 and ratio 1: the box is the frame itself, 16:9 included (an absolute 4:3 box cannot be)
    assert frame_relative_box(108, 192, (1.0, 1.0), (1.0, 1.0), rng) == (0, 0, 108, 192)
    for _ in range(200):
        top, left, h, w = frame_relative_box(108, 192, (0.6, 1.0), (0.75, 1.3333), rng)
        assert 0 <= top and top + h <= 108 and 0 <= left and left + w <= 192
        assert 0.6 * 0.9 <= h * w / (108 * 192) <= 1.0


def test_install_whole_changes_the_test_box_and_keeps_training_colours(monkeypatch):
    import train.data.augment as augment
    import train.data.samples as samples
    from train.data import LoaderConfig

    monkeypatch.setattr(augment, "draw_augment", augment.draw_augment)  # restored after the test
    monkeypatch.setattr(samples, "draw_augment", samples.draw_augment)
    cfg = LoaderConfig()
    before = augment.draw_augment(cfg, 108, 192, train=True, rng=np.random.default_rng(3))
    install("whole")
    assert samples.draw_augment is augment.draw_augment
    test = augment.draw_augment(cfg, 108, 192, train=False, rng=None)
    assert (test.top, test.left, test.height, test.width) == (0, 0, 108, 192)
    after = augment.draw_augment(cfg, 108, 192, train=True, rng=np.random.default_rng(3))
    assert (after.brightness, after.contrast, after.saturation) == (before.brightness, before.contrast, before.saturation)
    with pytest.raises(ValueError, match="unknown view 'side'"):
        install("side")


def _details(path, ranks, videos):
    n = len(ranks)
    data = {"zero_shot": {"retrieval": {"normal": {
        "per_query": {"video": videos, "vtc": ranks},
        "vtc": {"t2v": {"R@1": 100.0 * sum(r <= 1 for r in ranks) / n, "R@5": 0.0, "R@10": 0.0, "MdR": 1}},
        "order_pairs": None}}}}
    path.write_text(json.dumps(data))
    return path


def test_paired_gain_counts_only_queries_that_changed(tmp_path):
    videos = [v for v in range(10) for _ in range(2)]  # 10 videos, 2 captions each
    centre = [1] * 6 + [3] * 14
    whole = [1] * 10 + [3] * 10  # 4 more queries at rank 1
    pairs = {"smaug": (_details(tmp_path / "c.json", centre, videos), _details(tmp_path / "w.json", whole, videos))}
    out = paired_gains(pairs, resamples=2000)
    run = out["runs"]["smaug"]
    assert run["gain_r1"] == pytest.approx(20.0)
    lo, hi = run["gain_r1_ci95"]
    assert 0 <= lo < 20 < hi  # the gain sits on 2 of 10 videos: resampling them moves it (never below 0)
    assert out["recipes"]["smaug"]["mean_gain_r1"] == pytest.approx(20.0)
    other = _details(tmp_path / "o.json", whole[:18], videos[:18])
    with pytest.raises(ValueError, match="one test set"):
        paired_gains({"x": (pairs["smaug"][0], other)}, resamples=10)
