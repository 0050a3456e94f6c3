"""What a clip shows: objects, background and a timeline of events, sampled from an RNG.

A :class:`Scene` is the single source of truth for a clip. The renderer draws it, the
grammar describes it, and ``meta.json`` stores it, so captions can never disagree with
the pixels. Events are the clip's "story": one or two actions in time order. A
temporal-order pair is two scenes that differ only in which action comes first
(:func:`swap_order`), so only a model that reads time can tell their captions apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Saturated object colours (RGB); backgrounds use muted tones so every object stands out.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 185, 70),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 30),
    "pink": (245, 120, 190),
    "cyan": (40, 215, 225),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
# Radius as a fraction of the frame's shorter side.
SIZES: dict[str, float] = {"small": 0.08, "medium": 0.105, "large": 0.13}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "charcoal": (38, 38, 42),
    "slate": (70, 78, 92),
    "gray": (128, 128, 128),
    "light gray": (205, 205, 200),
    "beige": (225, 212, 185),
    "olive": (85, 90, 55),
}
BACKGROUND_KINDS = ("solid", "gradient", "texture")
DIRECTIONS = ("left", "right", "up", "down")

# How far a move goes (fraction of the frame side along the motion), how much grow and
# shrink scale the object, and how far a rotation turns (radians).
MOVE_FRACTION = 0.28
GROW_FACTOR = 1.6
SHRINK_FACTOR = 0.55
ROTATION = 0.75 * np.pi

# Actions with a duration; the others happen at one frame.
CONTINUOUS = ("move", "grow", "shrink", "rotate")
INSTANT = ("recolor", "appear", "disappear")
ACTION_WEIGHTS: dict[str, float] = {
    "move": 0.36, "recolor": 0.2, "grow": 0.1, "shrink": 0.1, "rotate": 0.1,
    "appear": 0.07, "disappear": 0.07,
}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str  # the colour at the first frame
    size: str  # small | medium | large
    x: float  # centre at the first frame, pixels
    y: float


@dataclass(frozen=True)
class Action:
    """One step of the story, before it is placed in time."""

    obj: int  # index into Scene.objects
    kind: str  # move | grow | shrink | rotate | recolor | appear | disappear
    param: str | None = None  # direction for move, target colour for recolor


@dataclass(frozen=True)
class Event:
    """An action placed on the frame axis: active on frames [start, end]."""

    obj: int
    kind: str
    param: str | None
    start: int
    end: int  # == start for instant actions

    @property
    def action(self) -> Action:
        return Action(self.obj, self.kind, self.param)


@dataclass(frozen=True)
class Background:
    kind: str  # solid | gradient | texture
    colours: tuple[str, ...]  # one (solid, texture) or two (gradient) BACKGROUND_COLOURS names
    direction: str | None  # gradient: horizontal | vertical | diagonal
    texture_seed: int


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: int
    num_frames: int
    background: Background
    objects: tuple[SceneObject, ...]
    events: tuple[Event, ...]  # the story, in time order

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def radius(self, obj: int) -> float:
        return SIZES[self.objects[obj].size] * min(self.width, self.height)

    def still_objects(self) -> list[int]:
        """Objects no event touches."""
        acting = {e.obj for e in self.events}
        return [i for i in range(len(self.objects)) if i not in acting]

    def colour_states(self) -> set[tuple[str, str]]:
        """Every (colour, shape) combination the clip shows at some frame."""
        states = {(o.colour, o.shape) for o in self.objects}
        states |= {(e.param, self.objects[e.obj].shape) for e in self.events if e.kind == "recolor"}
        return states


# ----------------------------------------------------------------------------- timing


def event_windows(num_frames: int, count: int) -> list[tuple[int, int]]:
    """Frame windows of a story of ``count`` actions, with a gap between them.

    The gap keeps the order of two actions unambiguous in the pixels.
    """
    last = num_frames - 1
    spans = [(0.1, 0.9)] if count == 1 else [(0.08, 0.42), (0.58, 0.92)]
    return [(round(a * last), round(b * last)) for a, b in spans]


def place_actions(actions: list[Action], num_frames: int) -> tuple[Event, ...]:
    """Put the actions on the frame axis; instant actions fire mid-window."""
    events = []
    for action, (a, b) in zip(actions, event_windows(num_frames, len(actions))):
        if action.kind in INSTANT:
            a = b = (a + b) // 2
        events.append(Event(action.obj, action.kind, action.param, a, b))
    return tuple(events)


def swap_order(scene: Scene) -> Scene:
    """The partner of a temporal-order pair: same scene, the two actions swapped in time."""
    if len(scene.events) != 2:
        raise ValueError("only a two-event scene has a swapped-order partner")
    first, second = (e.action for e in scene.events)
    return dataclasses.replace(scene, events=place_actions([second, first], scene.num_frames))


# ----------------------------------------------------------------------------- validity


def story_is_valid(objects: tuple[SceneObject, ...], actions: list[Action]) -> bool:
    """Can these actions happen in this order? (Recolor must change the colour, an object
    appears before and disappears after its other actions, circles do not rotate.)"""
    colour = {i: o.colour for i, o in enumerate(objects)}
    start_colours = set(colour.values())
    seen_actions = set()
    for step, a in enumerate(actions):
        if a in seen_actions:
            return False
        seen_actions.add(a)
        if a.kind == "rotate" and objects[a.obj].shape == "circle":
            return False
        if a.kind == "recolor":
            # a new colour no object has at the start, so "the cyan triangle" stays unique
            if a.param == colour[a.obj] or a.param in start_colours:
                return False
            colour[a.obj] = a.param
        same_obj_before = [b for b in actions[:step] if b.obj == a.obj]
        same_obj_after = [b for b in actions[step + 1:] if b.obj == a.obj]
        if a.kind == "appear" and same_obj_before:
            return False
        if a.kind == "disappear" and same_obj_after:
            return False
    # An object with both appear and disappear would need appear first; checked above.
    return True


def motion_extent(orders: list[list[Action]], obj: int, width: int, height: int
                  ) -> tuple[float, float, float, float, float]:
    """Offsets (min_dx, max_dx, min_dy, max_dy) the object reaches over all given orders,
    and its largest scale, so a start position can keep it inside the frame."""
    dxs, dys, scale = [0.0], [0.0], 1.0
    for order in orders:
        dx = dy = 0.0
        s = 1.0
        for a in order:
            if a.obj != obj:
                continue
            if a.kind == "move":
                step_x = MOVE_FRACTION * width
                step_y = MOVE_FRACTION * height
                dx += {"left": -step_x, "right": step_x}.get(a.param, 0.0)
                dy += {"up": -step_y, "down": step_y}.get(a.param, 0.0)
                dxs.append(dx)
                dys.append(dy)
            elif a.kind == "grow":
                s *= GROW_FACTOR
            elif a.kind == "shrink":
                s *= SHRINK_FACTOR
            scale = max(scale, s)
    return min(dxs), max(dxs), min(dys), max(dys), scale


# ----------------------------------------------------------------------------- sampling

ComboFilter = Callable[[str, str], bool]  # (colour, shape) -> allowed?


def _choice(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def sample_background(rng: np.random.Generator) -> Background:
    kind = _choice(rng, BACKGROUND_KINDS)
    names = list(BACKGROUND_COLOURS)
    if kind == "gradient":
        a, b = rng.choice(len(names), size=2, replace=False)
        return Background(kind, (names[a], names[b]), _choice(rng, ("horizontal", "vertical", "diagonal")),
                          int(rng.integers(2**31)))
    return Background(kind, (_choice(rng, names),), None, int(rng.integers(2**31)))


def sample_objects(rng: np.random.Generator, count: int, allowed: ComboFilter,
                   first: tuple[str, str] | None) -> list[tuple[str, str, str]]:
    """(colour, shape, size) for ``count`` objects with distinct colour+shape.

    ``first`` forces object 0's combination (a held-out clip); all others obey ``allowed``.
    """
    chosen: list[tuple[str, str, str]] = []
    while len(chosen) < count:
        if first is not None and not chosen:
            colour, shape = first
        else:
            shape = _choice(rng, SHAPES)
            colour = _choice(rng, [c for c in COLOURS if allowed(c, shape)])
        if any(c == colour and s == shape for c, s, _ in chosen):
            continue
        chosen.append((colour, shape, _choice(rng, SIZES)))
    return chosen


def sample_action(rng: np.random.Generator, obj: int, shape: str, colour_allowed: ComboFilter,
                  exclude: tuple[str, ...] = ()) -> Action:
    kinds = [k for k in ACTION_WEIGHTS if k not in exclude and not (k == "rotate" and shape == "circle")]
    weights = np.array([ACTION_WEIGHTS[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    if kind == "move":
        return Action(obj, kind, _choice(rng, DIRECTIONS))
    if kind == "recolor":
        return Action(obj, kind, _choice(rng, [c for c in COLOURS if colour_allowed(c, shape)]))
    return Action(obj, kind, None)


def sample_story(rng: np.random.Generator, objects: tuple[SceneObject, ...], count: int,
                 allowed: ComboFilter, swappable: bool) -> list[Action] | None:
    """``count`` actions; with ``swappable`` both orders must be valid (a pair's story)."""
    first_obj = 0  # object 0 always acts: a held-out clip's forced combination is in the story
    if count == 1:
        actions = [sample_action(rng, first_obj, objects[first_obj].shape, allowed)]
    else:
        second_obj = first_obj
        if len(objects) > 1 and rng.random() < 0.5:
            second_obj = int(rng.integers(1, len(objects)))
        # A pair swaps the two actions, so appear/disappear on one object cannot be paired
        # with another action of that same object.
        exclude = ("appear", "disappear") if swappable and second_obj == first_obj else ()
        a = sample_action(rng, first_obj, objects[first_obj].shape, allowed, exclude)
        b = sample_action(rng, second_obj, objects[second_obj].shape, allowed, exclude)
        actions = [a, b] if rng.random() < 0.5 else [b, a]
    orders = [actions, actions[::-1]] if swappable else [actions]
    if not all(story_is_valid(objects, order) for order in orders):
        return None
    return actions


def sample_scene(
    rng: np.random.Generator,
    *,
    width: int,
    height: int,
    fps: int,
    num_frames: int,
    max_objects: int,
    story_length: int,
    swappable: bool,
    allowed: ComboFilter,
    first_combo: tuple[str, str] | None = None,
) -> Scene:
    """A random scene whose every (colour, shape) state obeys ``allowed`` except the forced
    ``first_combo`` of object 0. Resamples until the objects fit inside the frame."""
    background = sample_background(rng)
    for _ in range(1000):
        count = int(rng.integers(1, max_objects + 1))
        specs = sample_objects(rng, count, allowed, first_combo)
        placeholder = tuple(SceneObject(s, c, z, 0.0, 0.0) for c, s, z in specs)
        actions = sample_story(rng, placeholder, story_length, allowed, swappable)
        if actions is None:
            continue
        objects = _place_objects(rng, placeholder, actions, width, height, swappable)
        if objects is None:
            continue
        return Scene(width, height, fps, num_frames, background, objects,
                     place_actions(actions, num_frames))
    raise RuntimeError("could not sample a valid scene; is the frame too small for the objects?")


def _place_objects(rng, objects, actions, width, height, swappable):
    """Start positions inside the frame for every order, not overlapping at frame 0."""
    orders = [actions, actions[::-1]] if swappable else [actions]
    placed: list[SceneObject] = []
    short = min(width, height)
    margin = 2.0
    for i, o in enumerate(objects):
        r = SIZES[o.size] * short
        x0, x1, y0, y1, scale = motion_extent(orders, i, width, height)
        reach = r * scale * 1.15 + margin  # a rotated square's corner reaches 1.13 r
        lo_x, hi_x = reach - x0, width - reach - x1
        lo_y, hi_y = reach - y0, height - reach - y1
        if lo_x > hi_x or lo_y > hi_y:
            return None
        for _ in range(50):
            x, y = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
            if all((x - p.x) ** 2 + (y - p.y) ** 2 > (r + SIZES[p.size] * short + 2) ** 2 for p in placed):
                break
        else:
            return None
        placed.append(dataclasses.replace(o, x=round(x, 2), y=round(y, 2)))
    return tuple(placed)


def scene_from_meta(clip: dict) -> Scene:
    """Rebuild a clip's Scene from its ``meta.json`` entry (e.g. to re-render ground truth)."""
    bg = clip["background"]
    return Scene(
        width=clip["width"], height=clip["height"], fps=clip["fps"], num_frames=clip["num_frames"],
        background=Background(bg["kind"], tuple(bg["colours"]), bg["direction"], bg["texture_seed"]),
        objects=tuple(SceneObject(**o) for o in clip["objects"]),
        events=tuple(Event(**e) for e in clip["events"]),
    )
