"""Compositional split: some colour+shape combinations appear only in test, marked held_out."""

from __future__ import annotations


def _combinations(clip) -> set[tuple[str, str]]:
    """Every (colour, shape) a clip shows: the objects' first colours and recolor targets."""
    shapes = [o["shape"] for o in clip["objects"]]
    combos = {(o["colour"], o["shape"]) for o in clip["objects"]}
    combos |= {(e["param"], shapes[e["obj"]]) for e in clip["events"] if e["kind"] == "recolor"}
    return combos


def test_held_out_combinations_never_in_train_or_val(tiny_meta):
    held = {tuple(c) for c in tiny_meta["held_out_combinations"]}
    assert held
    # every colour and every shape on its own is still in training
    colours = {c for c, _ in held}
    assert len(colours) == len(held)
    for clip in tiny_meta["clips"]:
        shown = _combinations(clip) & held
        assert clip["held_out"] == bool(shown), clip["stem"]
        if clip["split"] != "test":
            assert not shown, (clip["stem"], clip["split"], shown)


def test_test_split_mixes_held_out_and_seen(tiny_meta):
    test = [c for c in tiny_meta["clips"] if c["split"] == "test"]
    assert any(c["held_out"] for c in test)
    assert any(not c["held_out"] for c in test)
    # a held-out clip's unseen combination is in its story (object 0 acts), not a bystander
    for clip in (c for c in test if c["held_out"]):
        assert any(e["obj"] == 0 for e in clip["events"])


def test_splits_and_counts(tiny_meta):
    counts = tiny_meta["counts"]
    assert counts == {s: sum(c["split"] == s for c in tiny_meta["clips"]) for s in ("train", "val", "test")}
    assert all(n > 0 for n in counts.values())
    assert sum(counts.values()) == 16
