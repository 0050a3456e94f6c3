"""Properties of planned scenes over a few hundred clips (planning only, no rendering)."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.grammar import VERB_PHRASES
from pipeline.synthetic.plan import plan_clips
from pipeline.synthetic.render import object_state
from pipeline.synthetic.scene import story_is_valid


@pytest.fixture(scope="module")
def planned():
    clips, _ = plan_clips(SyntheticConfig(num_clips=300, seed=11))
    return clips


def test_objects_stay_inside_the_frame(planned):
    for clip in planned:
        s = clip.scene
        for i in range(len(s.objects)):
            for t in range(s.num_frames):
                st = object_state(s, i, t)
                # the shapes reach at most 1.13 radii from their centre (a rotated square)
                reach = st.radius * 1.13
                assert reach <= st.x <= s.width - reach and reach <= st.y <= s.height - reach, (clip.stem, i, t)


def test_stories_are_valid_and_unambiguous(planned):
    for clip in planned:
        s = clip.scene
        assert 1 <= len(s.events) <= 2
        assert story_is_valid(s.objects, [e.action for e in s.events])
        combos = [(o.colour, o.shape) for o in s.objects]
        assert len(set(combos)) == len(combos)  # "the red circle" names one object
        if len(s.events) == 2:
            first, second = s.events
            assert first.end < second.start  # a gap between the two events: their order is visible


def test_mix_of_everything(planned):
    kinds = Counter(e.kind for c in planned for e in c.scene.events)
    assert set(kinds) == {"move", "grow", "shrink", "rotate", "recolor", "appear", "disappear"}
    assert {len(c.scene.objects) for c in planned} == {1, 2, 3}
    assert {c.scene.background.kind for c in planned} == {"solid", "gradient", "texture"}
    assert {(c.scene.width, c.scene.height) for c in planned} == set(SyntheticConfig().sizes)
    assert {c.scene.fps for c in planned if c.format.name != "gif"} == set(SyntheticConfig().fps)
    assert {c.scene.fps for c in planned if c.format.name == "gif"} == {10}
    assert all(2.0 - 0.05 <= c.scene.duration <= 6.0 + 0.05 for c in planned)
    pairs = Counter(c.pair_id for c in planned if c.pair_id)
    assert set(pairs.values()) == {2} and abs(2 * len(pairs) / len(planned) - 0.4) < 0.02


def test_captions_use_synonyms_and_differ(planned):
    words = " ".join(t for c in planned for t in c.captions)
    for synonym in ("slides to the left", "box", "crimson", "gets bigger", "vanishes", "after"):
        assert synonym in words, synonym
    for clip in planned:
        assert len(set(clip.captions)) == len(clip.captions) == 5
    assert all(("move", d) in VERB_PHRASES for d in ("left", "right", "up", "down"))


@pytest.mark.parametrize("n, pair_fraction", [(7, 1.0), (3, 1.0), (4, 1.0), (3, 0.0), (5, 0.5)])
def test_clip_count_is_exact(n, pair_fraction):
    clips, _ = plan_clips(SyntheticConfig(num_clips=n, pair_fraction=pair_fraction))
    assert [c.stem for c in clips] == [f"clip_{i:05d}" for i in range(n)]
    assert {c.split for c in clips} == {"train", "val", "test"}
