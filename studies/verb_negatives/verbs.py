"""Verb negatives: the caption with one event replaced by another, the objects kept.

The order probe (studies/order/probe.py) finds the text side holding which events happen and in
which order, and the video tower holding neither: in-batch VTC on this benchmark is won by
objects and colours, which almost every pair of clips in a batch differs in, so nothing asks the
tower what the objects do. "Verbs in Action" (Momeni et al., 2023) meets the same bias in real
video-text data with verb-focused hard negatives: the caption with its verb changed, so the
clip must be told from a caption that names the right objects doing the wrong thing.

Here the negative comes from a rule over a small lexicon of English event phrases (motion,
growth, rotation, colour change, appearance), not from the benchmark's own tables, so it applies
to any caption that uses those words. One event phrase of the caption, drawn among those the
lexicon finds, is replaced by the plain phrase of another event class; captions with no such phrase get
no negative.
"""

from __future__ import annotations

import random
import re

DIRECTIONS = ("left", "right", "up", "down")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan", "white", "black")

# event class -> phrases that name it (regular expressions over whole words)
_COLOUR = r"(?:" + "|".join(COLOURS + ("turquoise", "azure", "magenta", "violet", "gold", "grey", "gray")) + r")"
EVENT_PHRASES: dict[str, tuple[str, ...]] = {
    "move": (r"(?:moves|drifts|slides|travels|glides|shifts|goes)(?:\s+(?:to\s+the\s+)?(?:left|right|up|down|upward|downward))?",),
    "grow": (r"grows", r"expands", r"gets\s+bigger", r"enlarges", r"becomes\s+larger", r"gets\s+larger"),
    "shrink": (r"shrinks", r"gets\s+smaller", r"contracts", r"becomes\s+smaller"),
    "rotate": (r"rotates", r"spins", r"turns\s+around"),
    "recolour": (r"turns\s+" + _COLOUR, r"becomes\s+" + _COLOUR, r"changes\s+colou?r\s+to\s+" + _COLOUR),
    "appear": (r"appears", r"shows\s+up", r"pops\s+up", r"comes\s+into\s+view"),
    "disappear": (r"disappears", r"vanishes", r"fades\s+away", r"fades\s+out"),
}
_FIND = re.compile("|".join(f"(?P<{name}>\\b(?:{'|'.join(p)})\\b)" for name, p in EVENT_PHRASES.items()),
                   re.IGNORECASE)


def plain_phrase(event: str, rng: random.Random) -> str:
    if event == "move":
        return f"moves {rng.choice(DIRECTIONS)}"
    if event == "recolour":
        return f"turns {rng.choice(COLOURS)}"
    return {"grow": "grows", "shrink": "shrinks", "rotate": "rotates", "appear": "appears",
            "disappear": "disappears"}[event]


def replace_event(caption: str, rng: random.Random) -> str | None:
    """The caption with one of its event phrases (drawn) replaced by another event class's plain
    phrase; None when no phrase of the lexicon occurs."""
    found_all = list(_FIND.finditer(caption))
    if not found_all:
        return None
    m = rng.choice(found_all)
    found = m.lastgroup
    other = rng.choice([e for e in EVENT_PHRASES if e != found])
    return caption[: m.start()] + plain_phrase(other, rng) + caption[m.end():]
