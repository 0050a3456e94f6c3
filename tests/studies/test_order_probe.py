"""The order probe (studies/order/probe.py): labels from canonical captions, and an order accuracy
that is high only for features that carry order, at chance for features that carry which events
happen but not in which order."""

from __future__ import annotations

import pytest
import torch

from studies.order.probe import EVENT_VERBS, _captions_with_swaps, event_verbs, events_accuracy, order_accuracy


def test_labels_come_from_canonical_two_event_captions_only():
    grows, turns, moves = (EVENT_VERBS.index(v) for v in ("grows", "turns", "moves"))
    assert event_verbs("a purple square turns cyan, then a blue star grows") == (turns, grows)
    assert event_verbs("a red circle moves left, then turns blue") == (moves, turns)
    assert event_verbs("first a red circle moves left and then turns blue") is None   # a paraphrase
    assert event_verbs("a red circle moves left") is None                             # one event
    swapped = _captions_with_swaps([("a purple square turns cyan, then a blue star grows", (turns, grows))])
    assert swapped[1] == ("a blue star grows, then a purple square turns cyan", (grows, turns))


def _items(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(len(EVENT_VERBS), (n,), generator=g)
    second = (first + torch.randint(1, len(EVENT_VERBS), (n,), generator=g)) % len(EVENT_VERBS)
    return torch.stack([first, second], 1)


def _features(labels: torch.Tensor, ordered: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    onehot = torch.eye(len(EVENT_VERBS))
    a, b = onehot[labels[:, 0]], onehot[labels[:, 1]]
    # ordered: first and second event in their own slots; unordered: only which events happen
    x = torch.cat([a, b], 1) if ordered else torch.cat([a + b, a + b], 1)
    return x + 0.1 * torch.randn(x.shape, generator=g)


def test_order_accuracy_separates_ordered_from_bag_features():
    train, test = _items(300, 0), _items(200, 1)
    ordered = order_accuracy(_features(train, True, 2), train[:, 0], _features(test, True, 3), test)
    bag = order_accuracy(_features(train, False, 2), train[:, 0], _features(test, False, 3), test)
    assert ordered["order_acc"] > 95 and ordered["num_test"] == 200
    assert 35 < bag["order_acc"] < 65          # knows the two events, not their order: chance
    assert events_accuracy(_features(train, False, 2), train, _features(test, False, 3), test) > 95
    assert events_accuracy(_features(train, True, 2), train, _features(test, True, 3), test) > 95
    g = torch.Generator().manual_seed(5)
    noise = events_accuracy(torch.randn(300, 14, generator=g), train, torch.randn(200, 14, generator=g), test)
    assert noise < 25                          # knows neither (chance about 1 in 21)
    same = torch.tensor([[1, 1], [2, 2]])      # items whose two verbs agree say nothing about order
    assert order_accuracy(_features(train, True, 2), train[:, 0], _features(same, True, 4), same)["order_acc"] is None


def test_supervised_scores_and_labels():
    from studies.order.supervised import _labelled, scores

    moves, turns, grows = (EVENT_VERBS.index(v) for v in ("moves", "turns", "grows"))
    batch = {"meta": [{"captions": ["a red circle moves left, then turns blue"]},
                      {"captions": ["a red circle moves left"]},
                      {"captions": ["first a star grows and then it spins", "a star grows, then rotates"]}]}
    rows, labels = _labelled(batch)
    assert rows.tolist() == [0, 2] and labels.tolist() == [[moves, turns], [grows, EVENT_VERBS.index("rotates")]]
    labels = torch.tensor([[moves, turns], [turns, moves], [grows, grows]])
    first = torch.zeros(3, len(EVENT_VERBS))
    first[0, moves] = first[1, moves] = 1.0          # right for item 0, wrong for item 1
    events = torch.zeros(3, len(EVENT_VERBS))
    events[:, moves] = events[:, turns] = 1.0        # names both events of items 0 and 1
    out = scores(first, events, labels)
    assert out["order_acc"] == 50.0 and out["events_acc"] == 100.0 and out["num_test"] == 2


def test_supervised_towers_read_time_order_and_bad_settings_are_refused():
    from studies.order.supervised import Conv3dTower, EventTower, _batches, main
    from tests.model.conftest import tiny_config

    torch.manual_seed(0)
    tower = Conv3dTower(frames=4, channels=8)
    video = torch.randn(2, 4, 3, 32, 32)
    feature = tower(video)
    assert feature.shape == (2, tower.width) and tower.width == 64 * 4
    assert not torch.allclose(tower(video.flip(1)), feature, atol=1e-4)   # frames are kept in order
    vit = EventTower(tiny_config().video, "conv-stem")
    first, events = vit(video)
    assert first.shape == events.shape == (2, len(EVENT_VERBS))
    with pytest.raises(ValueError, match="unknown tower 'resnet'"):
        EventTower(tiny_config().video, "resnet")
    with pytest.raises(ValueError, match="no masking"):
        EventTower(tiny_config().video, "conv3d")(video, mask_ratio=0.5)
    # --fit-clips: random batches of at most 16, only ever from the fixed clips
    clips = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1, 1)
    labels = torch.arange(20).view(20, 1).repeat(1, 2)
    batches = _batches(None, (clips, labels), seed=0)
    for _ in range(3):
        v, lab = next(batches)
        assert len(v) == 16 and torch.equal(v.flatten().long(), lab[:, 0])
    for bad in (["--fit-clips", "1"], ["--tower", "conv3d", "--mask-ratio", "0.5"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            main(bad)


def test_the_order_prior_is_what_verb_statistics_alone_give():
    from studies.order.supervised import prior_order_acc

    moves, turns, appears = (EVENT_VERBS.index(v) for v in ("moves", "turns", "appears"))
    balanced = torch.tensor([[moves, turns], [turns, moves]] * 5)
    test = torch.tensor([[moves, turns], [turns, moves]])
    assert prior_order_acc(balanced, test) == 50.0            # symmetric statistics: chance
    skewed = torch.tensor([[appears, moves]] * 9 + [[moves, appears]])
    assert prior_order_acc(skewed, torch.tensor([[appears, moves]] * 3)) == 100.0
