"""Order-pair annotations (written by the synthetic benchmark, read by eval) and the bootstrap
intervals of recall."""

from __future__ import annotations

import json

import pytest
import torch

from eval.metrics import bootstrap_recall_ci, recall_summary
from eval.order_pairs import load_order_pairs, pair_accuracy, pair_scores
from pipeline.config import ConfigError
from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.plan import plan_clips
from pipeline.synthetic.writers import order_pair_entries


def test_benchmark_writes_one_entry_per_pair_clip_with_its_partners_caption():
    clips, _ = plan_clips(SyntheticConfig(num_clips=60))
    test = [c for c in clips if c.split == "test"]
    entries = order_pair_entries(test)
    by_key = {c.stem: c for c in test}
    assert len(entries) == sum(c.pair_id is not None for c in test) > 0
    for e in entries:
        partner = next(c for c in test if c.pair_id == e["pair_id"] and c.stem != e["key"])
        assert e["caption"] == by_key[e["key"]].captions[0] and e["swapped_caption"] == partner.captions[0]
        # the same words in another order: only the order of the two events tells them apart
        assert e["caption"] != e["swapped_caption"]
        assert sorted(e["caption"].replace(",", "").split()) == sorted(e["swapped_caption"].replace(",", "").split())


def test_bad_order_pair_files_name_the_key(tmp_path):
    path = tmp_path / "pairs.json"
    with pytest.raises(ConfigError, match="eval.retrieval.order_pairs: .* not found"):
        load_order_pairs(path)
    path.write_text(json.dumps([{"key": "a", "caption": "x then y", "swapped_caption": "y then x"}, {"key": "b"}]))
    with pytest.raises(ConfigError, match="eval.retrieval.order_pairs: .* entry 1 has no text in caption, swapped"):
        load_order_pairs(path)
    path.write_text(json.dumps([{"key": "a", "caption": "same", "swapped_caption": "same"}]))
    with pytest.raises(ConfigError, match="entry 0 .*equal"):
        load_order_pairs(path)


def test_pair_accuracy_counts_ties_half():
    own, swapped = torch.tensor([2.0, 1.0, 0.5, 3.0]), torch.tensor([1.0, 2.0, 0.5, 0.0])
    assert pair_accuracy(own, swapped) == pytest.approx(100 * 2.5 / 4)
    assert pair_accuracy(torch.zeros(6), torch.zeros(6)) == 50.0  # blind to order: chance, not 0


def test_pair_scores_expose_a_model_that_cannot_tell_the_two_clips_apart():
    entries = [{"key": k, "pair_id": p} for k, p in (("a", "p"), ("b", "p"), ("c", "q"), ("d", "q"), ("e", None))]
    # clips a/b (and c/d) have the same features: each caption leans one way for both clips, so
    # per clip exactly one of each pair wins (50%), yet no pair has both clips right
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [1.0, 0.0]])   # own captions
    swapped = torch.stack([t[1], t[0], t[3], t[2], t[4] * 0])
    own_s, swap_s, cross = (v * t).sum(-1), (v * swapped).sum(-1), t @ v.t()
    assert pair_accuracy(own_s[:4], swap_s[:4]) == 50.0
    blind = pair_scores(entries, own_s, swap_s, cross)
    assert blind["num_pairs"] == 2 and blind["text"] == 0.0 and blind["group"] == 0.0
    # clips that differ along the captions' difference: every comparison right
    v2 = torch.tensor([[1.0, -0.5], [-0.5, 1.0], [1.0, -0.5], [-0.5, 1.0], [1.0, 1.0]])
    t2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    sw2 = torch.stack([t2[1], t2[0], t2[3], t2[2], t2[4] * 0])
    sure = pair_scores(entries, (v2 * t2).sum(-1), (v2 * sw2).sum(-1), t2 @ v2.t())
    assert sure["text"] == sure["video"] == sure["group"] == 100.0
    assert pair_scores([{"key": "a"}, {"key": "b", "pair_id": "x"}], own_s[:2], swap_s[:2], cross[:2, :2]) is None


def test_bootstrap_interval_resamples_videos_with_their_captions():
    torch.manual_seed(0)
    videos = [v for v in range(100) for _ in range(5)]
    # every caption of a video shares its fate: the interval is that of 100 draws, not 500
    clustered = [1 if v % 4 == 0 else 9 for v in videos]
    ci = bootstrap_recall_ci(clustered, videos, (1, 10), resamples=1000, seed=0)
    point = recall_summary(torch.tensor(clustered), (1,))["R@1"]
    low, high = ci["R@1"]
    assert low < point == 25.0 < high and 12.0 < high - low < 22.0  # ~ 2 x 1.96 x sqrt(.25 x .75 / 100)
    assert ci["R@10"] == [100.0, 100.0]
    assert bootstrap_recall_ci(clustered, videos, (1,), resamples=1000, seed=0) == {"R@1": ci["R@1"]}  # fixed seed
    spread = [1 if i % 4 == 0 else 9 for i in range(500)]  # the same R@1 spread over every video
    low2, high2 = bootstrap_recall_ci(spread, videos, (1,), resamples=1000, seed=0)["R@1"]
    assert high2 - low2 < (high - low) / 1.5
