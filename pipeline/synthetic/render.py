"""Scene -> frames: numpy arrays [T, H, W, 3] uint8, drawn with 2x2 supersampled edges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.scene import (
    BACKGROUND_COLOURS,
    COLOURS,
    GROW_FACTOR,
    MOVE_FRACTION,
    ROTATION,
    SHRINK_FACTOR,
    Background,
    Scene,
)


@dataclass(frozen=True)
class ObjectState:
    """Where an object is and how it looks at one frame."""

    x: float
    y: float
    radius: float
    angle: float
    colour: str
    visible: bool


def progress(start: int, end: int, t: int) -> float:
    """0 before an event, 1 after it, linear in between (a step for instant events)."""
    if end <= start:
        return 1.0 if t >= start else 0.0
    return float(np.clip((t - start) / (end - start), 0.0, 1.0))


def object_state(scene: Scene, obj: int, t: int) -> ObjectState:
    o = scene.objects[obj]
    x, y, scale, angle, colour = o.x, o.y, 1.0, 0.0, o.colour
    visible = not any(e.obj == obj and e.kind == "appear" for e in scene.events)
    for e in scene.events:
        if e.obj != obj:
            continue
        p = progress(e.start, e.end, t)
        if e.kind == "move":
            x += p * MOVE_FRACTION * scene.width * {"left": -1, "right": 1}.get(e.param, 0)
            y += p * MOVE_FRACTION * scene.height * {"up": -1, "down": 1}.get(e.param, 0)
        elif e.kind == "grow":
            scale *= 1 + p * (GROW_FACTOR - 1)
        elif e.kind == "shrink":
            scale *= 1 + p * (SHRINK_FACTOR - 1)
        elif e.kind == "rotate":
            angle += p * ROTATION
        elif e.kind == "recolor" and p >= 1:
            colour = e.param
        elif e.kind == "appear" and p >= 1:
            visible = True
        elif e.kind == "disappear" and p >= 1:
            visible = False
    return ObjectState(x, y, scene.radius(obj) * scale, angle, colour, visible)


# ----------------------------------------------------------------------------- shapes
# Each takes coordinates (u, v) in units of the radius, v pointing up, and says "inside".


def _circle(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _triangle(u, v):
    # Equilateral, circumradius 1, pointing up: inside all three edges (inradius 0.5).
    inside = v >= -0.5
    for angle in (np.pi / 6, 5 * np.pi / 6):
        inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5
    return inside


def _star(u, v):
    # Five points: the boundary radius runs linearly between 1 (tips) and 0.48 (valleys).
    rho = np.hypot(u, v)
    phi = np.mod(np.arctan2(v, u) - np.pi / 2, 2 * np.pi / 5)
    frac = np.abs(phi / (2 * np.pi / 5) - 0.5) * 2  # 1 at a tip, 0 at a valley
    return rho <= 0.48 + 0.52 * frac


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))


SHAPE_TESTS = {"circle": _circle, "square": _square, "triangle": _triangle, "star": _star, "cross": _cross}
_SUBSAMPLES = ((-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25))


def coverage(shape: str, state: ObjectState, width: int, height: int):
    """(y slice, x slice, alpha [h, w]) of the object's pixels, or None when off-frame."""
    reach = state.radius * 1.2 + 1
    x0, x1 = max(int(state.x - reach), 0), min(int(state.x + reach) + 2, width)
    y0, y1 = max(int(state.y - reach), 0), min(int(state.y + reach) + 2, height)
    if x0 >= x1 or y0 >= y1 or state.radius <= 0:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cos, sin = np.cos(state.angle), np.sin(state.angle)
    test = SHAPE_TESTS[shape]
    alpha = np.zeros(ys.shape, np.float32)
    for dy, dx in _SUBSAMPLES:
        # pixel centres at +0.5; image y points down, shape space v points up
        px = (xs + 0.5 + dx - state.x) / state.radius
        py = -(ys + 0.5 + dy - state.y) / state.radius
        u = cos * px + sin * py  # rotate the sample back by the object's angle
        v = -sin * px + cos * py
        alpha += test(u, v)
    return slice(y0, y1), slice(x0, x1), alpha / len(_SUBSAMPLES)


# ----------------------------------------------------------------------------- frames


def render_background(bg: Background, width: int, height: int) -> np.ndarray:
    """[H, W, 3] float32 in 0..255."""
    first = np.array(BACKGROUND_COLOURS[bg.colours[0]], np.float32)
    if bg.kind == "gradient":
        second = np.array(BACKGROUND_COLOURS[bg.colours[1]], np.float32)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = {"horizontal": xs / max(width - 1, 1), "vertical": ys / max(height - 1, 1),
             "diagonal": (xs + ys) / max(width + height - 2, 1)}[bg.direction]
        return first + t[..., None] * (second - first)
    frame = np.broadcast_to(first, (height, width, 3)).astype(np.float32)
    if bg.kind == "texture":
        # Smooth low-contrast blotches: a coarse random grid, bilinearly upsampled.
        rng = np.random.default_rng(bg.texture_seed)
        coarse = rng.normal(0.0, 14.0, size=(height // 16 + 2, width // 16 + 2)).astype(np.float32)
        yi = np.linspace(0, coarse.shape[0] - 1.001, height)
        xi = np.linspace(0, coarse.shape[1] - 1.001, width)
        y0, x0 = yi.astype(int), xi.astype(int)
        fy, fx = (yi - y0)[:, None], (xi - x0)[None, :]
        c = coarse
        smooth = ((1 - fy) * (1 - fx) * c[y0][:, x0] + (1 - fy) * fx * c[y0][:, x0 + 1]
                  + fy * (1 - fx) * c[y0 + 1][:, x0] + fy * fx * c[y0 + 1][:, x0 + 1])
        frame = frame + smooth[..., None]
    return frame


def render_frame(scene: Scene, t: int, background: np.ndarray | None = None) -> np.ndarray:
    """Frame ``t`` as [H, W, 3] uint8. Objects are drawn in index order (later on top)."""
    if background is None:
        background = render_background(scene.background, scene.width, scene.height)
    frame = background.copy()
    for i, o in enumerate(scene.objects):
        state = object_state(scene, i, t)
        if not state.visible:
            continue
        cov = coverage(o.shape, state, scene.width, scene.height)
        if cov is None:
            continue
        ys, xs, alpha = cov
        colour = np.array(COLOURS[state.colour], np.float32)
        region = frame[ys, xs]
        frame[ys, xs] = region + alpha[..., None] * (colour - region)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def render(scene: Scene) -> np.ndarray:
    """All frames, [T, H, W, 3] uint8."""
    background = render_background(scene.background, scene.width, scene.height)
    return np.stack([render_frame(scene, t, background) for t in range(scene.num_frames)])
