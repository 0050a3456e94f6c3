"""Scene -> text: captions from a small grammar with synonyms, open-ended QA and
five-way multiple choice whose distractors include the temporal-order swap.

Everything is derived from the :class:`~pipeline.synthetic.scene.Scene`, never from the
pixels, so the text is ground truth. Canonical wording (``canonical=True``) is used for
multiple-choice options, so a distractor differs from the answer in content, not style.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.scene import COLOURS, DIRECTIONS, SHAPES, Event, Scene, place_actions

COLOUR_SYNONYMS = {
    "red": ["red", "crimson"], "green": ["green", "emerald"], "blue": ["blue", "azure"],
    "yellow": ["yellow", "golden"], "purple": ["purple", "violet"], "orange": ["orange"],
    "pink": ["pink"], "cyan": ["cyan", "turquoise"],
}
SHAPE_SYNONYMS = {
    "circle": ["circle", "disc", "round dot"], "square": ["square", "box"],
    "triangle": ["triangle"], "star": ["star"], "cross": ["cross", "plus sign"],
}
# Third-person verb phrases; "{c}" is a colour word.
VERB_PHRASES = {
    ("move", "left"): ["moves left", "slides to the left", "travels leftward", "drifts left"],
    ("move", "right"): ["moves right", "slides to the right", "travels rightward", "drifts right"],
    ("move", "up"): ["moves up", "rises", "floats upward", "slides up"],
    ("move", "down"): ["moves down", "drops", "sinks downward", "slides down"],
    ("grow", None): ["grows", "gets bigger", "expands"],
    ("shrink", None): ["shrinks", "gets smaller", "contracts"],
    ("rotate", None): ["rotates", "spins", "turns around"],
    ("recolor", None): ["turns {c}", "changes color to {c}", "becomes {c}"],
    ("appear", None): ["appears", "shows up", "pops into view"],
    ("disappear", None): ["disappears", "vanishes", "is gone"],
}
# Short answer labels of actions (open-ended "what happens first?" answers, MC options).
def action_label(kind: str, param: str | None) -> str:
    if kind == "move":
        return f"move {param}"
    if kind == "recolor":
        return f"turn {param}"
    return {"grow": "grow", "shrink": "shrink", "rotate": "rotate",
            "appear": "appear", "disappear": "disappear"}[kind]


NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
BACKGROUND_PHRASES = {
    "solid": ["on a plain {c} background", "against a {c} backdrop"],
    "gradient": ["on a gradient background", "against a {c} to {d} gradient"],
    "texture": ["on a textured {c} background", "against a mottled {c} backdrop"],
}


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    answer_type: str  # color | shape | direction | action | count | order


@dataclass(frozen=True)
class MultipleChoice:
    question: str
    options: tuple[str, ...]  # five
    answer: int  # index of the correct option
    answer_type: str  # caption | order


class Words:
    """Word choice: canonical names, or random synonyms drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator | None):
        self.rng = rng  # None: canonical wording

    def pick(self, options: list[str], p_first: float = 0.6) -> str:
        if self.rng is None or len(options) == 1 or self.rng.random() < p_first:
            return options[0]
        return options[1 + int(self.rng.integers(len(options) - 1))]

    def chance(self, p: float) -> bool:
        return self.rng is not None and self.rng.random() < p

    def colour(self, name: str) -> str:
        return self.pick(COLOUR_SYNONYMS[name], 0.75)

    def noun_phrase(self, scene: Scene, obj: int, article: str = "a") -> str:
        o = scene.objects[obj]
        words = [self.colour(o.colour), self.pick(SHAPE_SYNONYMS[o.shape], 0.7)]
        if self.chance(0.35):
            words.insert(0, o.size)
        phrase = " ".join(words)
        if article == "a":
            article = "an" if phrase[0] in "aeiou" else "a"
        return f"{article} {phrase}"

    def verb_phrase(self, e: Event) -> str:
        key = (e.kind, e.param if e.kind == "move" else None)
        phrase = self.pick(VERB_PHRASES[key], 0.5)
        return phrase.format(c=self.colour(e.param)) if e.kind == "recolor" else phrase

    def background(self, scene: Scene) -> str:
        bg = scene.background
        phrase = self.pick(BACKGROUND_PHRASES[bg.kind], 0.5)
        return phrase.format(c=bg.colours[0], d=bg.colours[-1])


# ----------------------------------------------------------------------------- captions


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """One sentence describing the story in time order (canonical wording if ``rng`` is None)."""
    w = Words(rng)
    events = scene.events
    template = 0 if rng is None else int(rng.integers(4))
    if len(events) == 1:
        (e,) = events
        text = f"{w.noun_phrase(scene, e.obj)} {w.verb_phrase(e)}"
        if template == 1:
            text = f"in this clip {text}"
    else:
        a, b = events
        if a.obj == b.obj:
            np_, va, vb = w.noun_phrase(scene, a.obj), w.verb_phrase(a), w.verb_phrase(b)
            text = [f"{np_} {va}, then {vb}", f"{np_} first {va} and then {vb}",
                    f"{np_} {va} and afterwards {vb}", f"{np_} {va} before it {vb}"][template]
        else:
            na, va = w.noun_phrase(scene, a.obj), w.verb_phrase(a)
            nb, vb = w.noun_phrase(scene, b.obj), w.verb_phrase(b)
            # The last template names the later event first: order lives in "after".
            text = [f"{na} {va}, then {nb} {vb}", f"first {na} {va}, and then {nb} {vb}",
                    f"{na} {va} before {nb} {vb}", f"{nb} {vb} after {na} {va}"][template]
    still = scene.still_objects()
    if still and w.chance(0.4):
        others = " and ".join(w.noun_phrase(scene, i) for i in still)
        verb = "stays" if len(still) == 1 else "stay"
        text += f" while {others} {verb} still"
    if w.chance(0.3):
        text += " " + w.background(scene)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)  # "a olive backdrop" -> "an olive backdrop"


def captions(scene: Scene, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct captions (fewer only if the grammar runs out), canonical first."""
    out = [caption(scene)]
    for _ in range(count * 20):
        if len(out) >= count:
            break
        text = caption(scene, rng)
        if text not in out:
            out.append(text)
    return out


# ----------------------------------------------------------------------------- open QA


def _the(scene: Scene, obj: int) -> str:
    return Words(None).noun_phrase(scene, obj, article="the")


def open_questions(scene: Scene) -> list[QA]:
    """Open-ended questions with one-word (or two-word) answers, MSRVTT-QA style."""
    qa: list[QA] = []
    first = scene.events[0]
    shapes = [o.shape for o in scene.objects]
    o = scene.objects[first.obj]
    # colour
    if shapes.count(o.shape) == 1:
        qa.append(QA(f"what color is the {o.shape} at the start?", o.colour, "color"))
    recolors = [e for e in scene.events if e.kind == "recolor"]
    if recolors:
        e = recolors[0]
        qa.append(QA(f"what color does {_the(scene, e.obj)} turn into?", e.param, "color"))
    # shape: the object doing the first action is unique by construction
    vp = Words(None).verb_phrase(first)
    qa.append(QA(f"what shape {vp}{' first' if len(scene.events) > 1 else ''}?", o.shape, "shape"))
    # direction / action of each acting object with a single action
    for obj in sorted({e.obj for e in scene.events}):
        own = [e for e in scene.events if e.obj == obj]
        if len(own) != 1:
            continue
        (e,) = own
        if e.kind == "move":
            qa.append(QA(f"which direction does {_the(scene, obj)} move?", e.param, "direction"))
        else:
            qa.append(QA(f"what does {_the(scene, obj)} do?", action_label(e.kind, e.param), "action"))
    # count
    n = len(scene.objects)
    qa.append(QA("how many shapes are in the video?", NUMBER_WORDS[n], "count"))
    # order
    if len(scene.events) == 2:
        a, b = scene.events
        qa.append(QA("what happens first?", action_label(a.kind, a.param), "order"))
        qa.append(QA("what happens last?", action_label(b.kind, b.param), "order"))
    return qa


# ----------------------------------------------------------------------------- multiple choice


def swapped(scene: Scene) -> Scene:
    a, b = scene.events
    return dataclasses.replace(scene, events=place_actions([b.action, a.action], scene.num_frames))


def _with_event(scene: Scene, index: int, **changes) -> Scene:
    events = list(scene.events)
    events[index] = dataclasses.replace(events[index], **changes)
    return dataclasses.replace(scene, events=tuple(events))


def _with_object(scene: Scene, index: int, **changes) -> Scene:
    objects = list(scene.objects)
    objects[index] = dataclasses.replace(objects[index], **changes)
    return dataclasses.replace(scene, objects=tuple(objects))


def caption_distractors(scene: Scene, rng: np.random.Generator) -> list[Scene]:
    """Altered scenes whose canonical captions are wrong for ``scene``.

    A two-event story first gets its temporal-order swap (the hard negative), then
    single-attribute changes: direction, action kind, colour, shape, recolor target.
    """
    hard: list[Scene] = []
    if len(scene.events) == 2:
        hard.append(swapped(scene))
    easy: list[Scene] = []
    for i, e in enumerate(scene.events):
        if e.kind == "move":
            for d in DIRECTIONS:
                if d != e.param:
                    easy.append(_with_event(scene, i, param=d))
        elif e.kind == "recolor":
            for c in COLOURS:
                if c not in (e.param, scene.objects[e.obj].colour):
                    easy.append(_with_event(scene, i, param=c))
        else:
            opposite = {"grow": "shrink", "shrink": "grow", "appear": "disappear",
                        "disappear": "appear", "rotate": "grow"}[e.kind]
            easy.append(_with_event(scene, i, kind=opposite))
        o = scene.objects[e.obj]
        for c in COLOURS:
            if c != o.colour:
                easy.append(_with_object(scene, e.obj, colour=c))
        for s in SHAPES:
            if s != o.shape:
                easy.append(_with_object(scene, e.obj, shape=s))
    order = rng.permutation(len(easy))
    picked = [easy[i] for i in order]
    if hard:
        # a swap combined with one attribute change: wrong twice, but looks like the answer
        picked.insert(1, swapped(picked[0]) if len(picked[0].events) == 2 else picked[0])
    return hard + picked


def _five_options(correct: str, candidates: list[str], rng: np.random.Generator):
    options = [correct]
    for c in candidates:
        if c not in options:
            options.append(c)
        if len(options) == 5:
            break
    if len(options) < 5:
        raise ValueError(f"not enough distinct distractors for {correct!r}")
    # keep the first distractor (the temporal swap, when there is one) among the options
    perm = rng.permutation(5)
    shuffled = [options[i] for i in perm]
    return tuple(shuffled), int(np.argwhere(perm == 0)[0, 0])


def multiple_choice(scene: Scene, rng: np.random.Generator) -> list[MultipleChoice]:
    out = []
    truth = caption(scene)
    wrong = [caption(s) for s in caption_distractors(scene, rng)]
    options, answer = _five_options(truth, wrong, rng)
    out.append(MultipleChoice("which sentence describes the video?", options, answer, "caption"))
    if len(scene.events) == 2:
        a, b = scene.events
        labels = [action_label(b.kind, b.param)]  # the order swap first
        others = [action_label("move", d) for d in DIRECTIONS] + [
            action_label(k, None) for k in ("grow", "shrink", "rotate", "appear", "disappear")
        ] + [action_label("recolor", c) for c in COLOURS]
        labels += [others[i] for i in rng.permutation(len(others))]
        options, answer = _five_options(action_label(a.kind, a.param), labels, rng)
        out.append(MultipleChoice("what happens first?", options, answer, "order"))
    return out
