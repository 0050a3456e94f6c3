"""Temporal-order pairs: same scene, two events in swapped order, captions that differ
only by that order, and pixels that show each clip's own order."""

from __future__ import annotations

import io
from collections import defaultdict

import av
import numpy as np

from pipeline.synthetic.encode import FORMATS, encode
from pipeline.synthetic.grammar import caption
from pipeline.synthetic.render import render
from pipeline.synthetic.scene import (
    Action, Background, Scene, SceneObject, place_actions, scene_from_meta, swap_order,
)


def _pairs(meta):
    pairs = defaultdict(list)
    for clip in meta["clips"]:
        if clip["pair_id"] is not None:
            pairs[clip["pair_id"]].append(clip)
    assert pairs, "the tiny set has temporal-order pairs"
    return list(pairs.values())


def _action(e):
    return (e["obj"], e["kind"], e["param"])


def test_pairs_swap_their_events_and_captions(tiny_meta):
    for a, b in _pairs(tiny_meta):
        assert a["split"] == b["split"]
        assert a["objects"] == b["objects"] and a["background"] == b["background"]
        assert (a["fps"], a["num_frames"], a["file"][-4:]) == (b["fps"], b["num_frames"], b["file"][-4:])
        assert [_action(e) for e in a["events"]] == [_action(e) for e in reversed(b["events"])]
        assert _action(a["events"][0]) != _action(a["events"][1])
        # the event windows are the same two slots, in the other order
        assert [(e["start"], e["end"]) for e in a["events"]] != [(e["start"], e["end"]) for e in reversed(b["events"])] \
            or all(e["start"] == e["end"] for e in a["events"] + b["events"])
        # no caption of one describes the other; the canonical ones share all words but order
        assert not set(a["captions"]) & set(b["captions"])
        assert sorted(a["captions"][0].replace(",", "").split()) == sorted(b["captions"][0].replace(",", "").split())
        # the partner's canonical caption is a distractor in the caption multiple choice
        for clip, partner in ((a, b), (b, a)):
            (mc,) = [m for m in clip["mc"] if m["answer_type"] == "caption"]
            assert mc["options"][mc["answer"]] == clip["captions"][0]
            assert partner["captions"][0] in mc["options"]
            first = {q["answer"] for q in clip["qa"] if q["question"] == "what happens first?"}
            last = {q["answer"] for q in partner["qa"] if q["question"] == "what happens last?"}
            assert first == last and len(first) == 1


def test_pixels_follow_each_clips_own_order(tiny_meta, tiny_decoded):
    """Between the two events a decoded frame matches its own scene, not its partner's."""
    checked = 0
    for a, b in _pairs(tiny_meta):
        for clip, partner in ((a, b), (b, a)):
            frames, _ = tiny_decoded[clip["file"]]
            gap = (clip["events"][0]["end"] + clip["events"][1]["start"]) // 2
            own = render(scene_from_meta(clip))[gap].astype(np.int16)
            other = render(scene_from_meta(partner))[gap].astype(np.int16)
            differ = np.abs(own - other).sum(-1) > 60  # pixels where the two orders disagree
            if differ.sum() < 20:
                continue  # e.g. an object that vanished on one side and changed unseen on the other
            got = frames[gap].astype(np.int16)
            to_own = np.abs(got - own)[differ].mean()
            to_other = np.abs(got - other)[differ].mean()
            assert to_own < to_other / 3, (clip["stem"], to_own, to_other)
            checked += 1
    assert checked >= 2


def _track(frames: np.ndarray):
    """Per frame: is the object red or blue, and its centre's x (from colour masks)."""
    f = frames.astype(np.int16)
    red = (f[..., 0] > 160) & (f[..., 1] < 90) & (f[..., 2] < 90)
    blue = (f[..., 2] > 160) & (f[..., 0] < 90) & (f[..., 1] < 140)
    colour, xs = [], []
    for r, b in zip(red, blue):
        colour.append("blue" if b.sum() > r.sum() else "red")
        ys, x = np.nonzero(r | b)
        xs.append(x.mean())
    return colour, np.array(xs)


def test_colour_change_and_motion_onset_swap_in_the_pixels():
    """A red square turns blue, then moves left -- and the pair partner in the other order.
    Read back from an encoded MP4: the frame of the colour change and the frame the motion
    starts come in opposite order in the two clips."""
    base = Scene(160, 120, 12, 48, Background("solid", ("gray",), None, 0),
                 (SceneObject("square", "red", "medium", 110.0, 60.0),),
                 place_actions([Action(0, "recolor", "blue"), Action(0, "move", "left")], 48))
    onsets = []
    for scene in (base, swap_order(base)):
        data = encode(render(scene), scene.fps, FORMATS["mp4"])
        with av.open(io.BytesIO(data)) as c:
            frames = np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)])
        colour, xs = _track(frames)
        change = colour.index("blue")
        moving = int(np.argmax(np.abs(xs - xs[0]) > 2.0))
        assert colour[0] == "red" and colour[-1] == "blue" and xs[-1] < xs[0] - 30
        onsets.append((change, moving))
    (change_a, move_a), (change_b, move_b) = onsets
    assert change_a < move_a and move_b < change_b
    # and the captions say so
    assert caption(base) == "a red square turns blue, then moves left"
    assert caption(swap_order(base)) == "a red square moves left, then turns blue"


def test_swap_needs_two_events():
    one = Scene(160, 120, 12, 48, Background("solid", ("gray",), None, 0),
                (SceneObject("square", "red", "medium", 80.0, 60.0),),
                place_actions([Action(0, "grow")], 48))
    try:
        swap_order(one)
    except ValueError as err:
        assert "two-event" in str(err)
    else:
        raise AssertionError("swap_order accepted a one-event scene")
