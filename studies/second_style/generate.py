"""Generate a differently styled video-caption collection, written from scratch.

    python -m studies.second_style.generate --out DIR --clips N --seed S [--test-clips M] [--workers W]

Style (unlike pipeline/synthetic's flat shapes on muted backgrounds with templated captions):
16:9 frames (320x180, some 384x216) at 24/25/30 fps, 3-8 s; 2-3 textured glyph sprites
(letters, digits, star, heart, arrow, ring, plus sign, with outlines and a fill texture) on busy
backgrounds (grain, diagonal stripes, gradients, checkerboards, bokeh, marbled clouds) seen through
a slow camera pan or zoom, with sensor noise; every sprite does something at once (slides, rises,
falls, bounces, spins, blinks, grows, shrinks, enters or leaves the frame). Captions are free-form:
several sentence structures (relative clauses, gerunds, "there is ...", fronted backgrounds),
synonyms for colours, objects and actions, shuffled mention order, short and long ones.

Writes, as a user would hand it over:
    DIR/videos/<id>.mp4 (H.264; every 10th clip .webm VP9, every 10th+5 .mkv H.264)
    DIR/train.json      MSR_VTT.json style: videos [{video_id, split}], annotations [{image_id, caption}] (5 per video)
    DIR/train.jsonl     the same captions as ClipBERT JSONL ({caption, clip_name})
    DIR/test.csv        MSRVTT 1k-A csv: key, vid_key, video_id, sentence (one caption per test video)
    DIR/meta.json       every clip's attributes, the held-out combinations, per-clip visibility in the
                        centre square (what the evaluation's centre crop keeps of a 16:9 frame)

The same seed gives the same annotations and meta.json (the worker count does not matter).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# ----------------------------------------------------------------------------- vocabulary

COLOURS = {  # name: (rgb, caption words)
    "red": ((222, 32, 40), ["red", "scarlet", "crimson"]),
    "orange": ((255, 135, 0), ["orange", "amber", "tangerine"]),
    "yellow": ((250, 222, 30), ["yellow", "golden", "lemon"]),
    "green": ((40, 185, 60), ["green", "emerald", "grass-green"]),
    "cyan": ((0, 205, 215), ["cyan", "turquoise", "teal"]),
    "blue": ((35, 75, 235), ["blue", "cobalt", "royal blue"]),
    "purple": ((150, 50, 205), ["purple", "violet", "plum"]),
    "pink": ((255, 110, 185), ["pink", "rose", "hot pink"]),
    "white": ((248, 248, 248), ["white", "snow-white", "ivory"]),
}

KINDS = {  # name: (glyph, caption nouns)
    "A": ("A", ["letter A", "capital A", "uppercase A"]),
    "K": ("K", ["letter K", "capital K", "uppercase K"]),
    "R": ("R", ["letter R", "capital R", "uppercase R"]),
    "3": ("3", ["digit 3", "number three", "numeral 3"]),
    "7": ("7", ["digit 7", "number seven", "numeral 7"]),
    "star": (None, ["star", "five-pointed star", "star icon"]),
    "heart": (None, ["heart", "heart symbol", "heart shape"]),
    "arrow": (None, ["arrow", "arrow icon", "pointer arrow"]),
    "ring": (None, ["ring", "hollow circle", "hoop"]),
    "plus": (None, ["plus sign", "cross", "plus symbol"]),
}

ACTIONS = {  # name: (present tense phrases, gerunds)
    "slide_left": (["slides to the left", "drifts leftward", "glides from right to left", "moves left"],
                   ["sliding to the left", "drifting leftward", "gliding from right to left"]),
    "slide_right": (["slides to the right", "drifts rightward", "glides from left to right", "moves right"],
                    ["sliding to the right", "drifting rightward", "gliding from left to right"]),
    "rise": (["rises", "floats upward", "moves up", "climbs toward the top"],
             ["rising", "floating upward", "climbing toward the top"]),
    "fall": (["falls", "sinks downward", "drops toward the bottom", "moves down"],
             ["falling", "sinking downward", "dropping toward the bottom"]),
    "bounce": (["bounces", "hops up and down", "keeps bouncing", "bounces in place"],
               ["bouncing", "hopping up and down", "bouncing in place"]),
    "spin": (["spins", "rotates", "twirls around", "turns in circles"],
             ["spinning", "rotating", "twirling around"]),
    "blink": (["blinks", "flickers on and off", "flashes", "keeps blinking"],
              ["blinking", "flickering on and off", "flashing"]),
    "grow": (["grows", "gets bigger", "expands", "swells up"],
             ["growing", "getting bigger", "expanding"]),
    "shrink": (["shrinks", "gets smaller", "contracts", "dwindles"],
               ["shrinking", "getting smaller", "contracting"]),
    "enter": (["enters the frame", "comes into view", "slides into view", "appears from the edge"],
              ["entering the frame", "coming into view", "sliding into view"]),
    "leave": (["leaves the frame", "exits the picture", "moves out of view", "disappears off the edge"],
              ["leaving the frame", "exiting the picture", "moving out of view"]),
}

BACKGROUNDS = {
    "noise": ["a grainy, noisy background", "speckled static", "a speckled backdrop"],
    "stripes": ["diagonal stripes", "a striped background", "slanted coloured bands"],
    "gradient": ["a smooth colour gradient", "a sunset-like gradient", "a fading gradient backdrop"],
    "checker": ["a checkerboard", "a checkered pattern", "a chequered backdrop"],
    "bokeh": ["blurry bokeh lights", "out-of-focus blobs of light", "a bokeh background"],
    "clouds": ["a cloudy, marbled texture", "soft cloud-like patterns", "a mottled backdrop"],
}

CAMERAS = {
    "static": [],
    "pan": ["as the camera pans slowly", "while the view pans sideways", "with a slow camera pan"],
    "zoom_in": ["as the camera zooms in", "while the view slowly zooms in", "with a slow zoom in"],
    "zoom_out": ["as the camera zooms out", "while the view slowly pulls back", "with a slow zoom out"],
}

SIZES = [(320, 180)] * 9 + [(384, 216)]
FPS = [24, 25, 30]
HELD_OUT_COUNT = 6           # (kind, colour) pairs never shown in training
HELD_OUT_TEST_SHARE = 0.35   # share of test clips that show one
CAPTIONS_PER_TRAIN_CLIP = 5
FONT_PATHS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
              "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"]


# ----------------------------------------------------------------------------- planning

def held_out_pairs(seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng([seed, 7001])
    pairs = [(k, c) for k in KINDS for c in COLOURS]
    idx = rng.choice(len(pairs), HELD_OUT_COUNT, replace=False)
    return sorted(pairs[i] for i in idx)


def _attr_key(clip: dict) -> tuple:
    return (clip["background"], tuple(sorted((o["kind"], o["colour"], o["action"]) for o in clip["objects"])))


def _draw_clip(rng: np.random.Generator, held: set, want_held: bool | None) -> dict:
    """One clip's scene: 2-3 objects with distinct kinds and distinct actions; held-out pairs only
    when want_held (test) and then at least one."""
    for _ in range(1000):
        n = int(rng.choice([2, 3], p=[0.45, 0.55]))
        kinds = list(rng.choice(list(KINDS), n, replace=False))
        colours = list(rng.choice(list(COLOURS), n, replace=False))
        actions = list(rng.choice(list(ACTIONS), n, replace=False))
        pairs = [(k, c) for k, c in zip(kinds, colours)]
        n_held = sum(p in held for p in pairs)
        if want_held is None or want_held is False:
            if n_held:
                continue
        elif n_held == 0:
            continue
        break
    w, h = SIZES[int(rng.integers(len(SIZES)))]
    return {
        "size": [w, h],
        "fps": int(rng.choice(FPS)),
        "duration": round(float(rng.uniform(3.0, 8.0)), 2),
        "background": str(rng.choice(list(BACKGROUNDS))),
        "camera": str(rng.choice(list(CAMERAS), p=[0.3, 0.3, 0.2, 0.2])),
        "objects": [{"kind": str(k), "colour": str(c), "action": str(a)} for k, c, a in zip(kinds, colours, actions)],
        "render_seed": int(rng.integers(2**31)),
    }


def plan(num_train: int, num_test: int, seed: int) -> tuple[list[dict], list[tuple[str, str]]]:
    held = held_out_pairs(seed)
    held_set = set(held)
    rng = np.random.default_rng([seed, 1])
    clips: list[dict] = []
    test_keys: set = set()
    n_test_held = int(round(HELD_OUT_TEST_SHARE * num_test))
    for i in range(num_test):
        want = i < n_test_held
        while True:
            c = _draw_clip(rng, held_set, want)
            if _attr_key(c) not in test_keys:   # distinct test videos have distinct caption-relevant attributes
                test_keys.add(_attr_key(c))
                break
        c.update(id=f"ss_test_{i:04d}", split="test")
        clips.append(c)
    for i in range(num_train):
        while True:
            c = _draw_clip(rng, held_set, False)
            if _attr_key(c) not in test_keys:    # no train clip shows a test clip's exact scene
                break
        c.update(id=f"ss_train_{i:05d}", split="train")
        clips.append(c)
    # container: every 10th clip VP9 .webm, every 10th+5 .mkv, the rest .mp4
    for j, c in enumerate(clips):
        c["container"] = "webm" if j % 10 == 3 else "mkv" if j % 10 == 8 else "mp4"
    return clips, held


# ----------------------------------------------------------------------------- captions

def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _np(rng, obj: dict, style: int | None = None) -> str:
    colour = str(rng.choice(COLOURS[obj["colour"]][1]))
    noun = str(rng.choice(KINDS[obj["kind"]][1]))
    style = int(rng.integers(4)) if style is None else style
    if style == 0:
        return f"{_article(colour)} {colour} {noun}"
    if style == 1:
        return f"{_article(noun)} {noun} in {colour}"
    if style == 2:
        return f"{_article(colour)} {colour}-coloured {noun}" if " " not in colour else f"{_article(colour)} {colour} {noun}"
    return f"{_article(noun)} {noun} coloured {colour}"


def _verb(rng, obj) -> str:
    return str(rng.choice(ACTIONS[obj["action"]][0]))


def _ger(rng, obj) -> str:
    return str(rng.choice(ACTIONS[obj["action"]][1]))


def _bg(rng, clip) -> str:
    return str(rng.choice(BACKGROUNDS[clip["background"]]))


def _cam(rng, clip) -> str:
    opts = CAMERAS[clip["camera"]]
    return str(rng.choice(opts)) if opts else ""


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(rng: np.random.Generator, clip: dict, full: bool) -> str:
    """One free-form caption. full=True mentions every object (kind, colour, action) and the
    background (the test captions); otherwise a template may mention a subset."""
    objs = list(clip["objects"])
    order = rng.permutation(len(objs))
    objs = [objs[i] for i in order]
    t = int(rng.integers(8)) if not full else int(rng.choice([0, 1, 2, 3, 4, 6]))
    bg, cam = _bg(rng, clip), _cam(rng, clip)
    cl = lambda s: s[0].upper() + s[1:]
    if t == 0:    # "A teal star spins while a red K slides left, on diagonal stripes."
        first = f"{_np(rng, objs[0])} {_verb(rng, objs[0])}"
        rest = [f"{_np(rng, o)} {_verb(rng, o)}" for o in objs[1:]]
        s = f"{first} while {_join(rest)}, on {bg}"
    elif t == 1:  # "On a checkerboard, a ... spins and a ... blinks."
        s = f"on {bg}, " + _join([f"{_np(rng, o)} {_verb(rng, o)}" for o in objs])
    elif t == 2:  # relative clauses
        s = "there is " + _join([f"{_np(rng, o)} that {_verb(rng, o)}" for o in objs]) + f" over {bg}"
    elif t == 3:  # gerund list fronted by the background
        s = f"{bg} behind " + _join([f"{_np(rng, o)} {_ger(rng, o)}" for o in objs])
    elif t == 4:  # "We see ..., and the backdrop is ..."
        s = "we see " + _join([f"{_np(rng, o)} {_ger(rng, o)}" for o in objs]) + f", all over {bg}"
    elif t == 5:  # short: one object
        o = objs[0]
        s = f"{_np(rng, o)} {_verb(rng, o)}"
    elif t == 6:  # semicolon chain
        s = "; ".join(f"{_np(rng, o)} {_verb(rng, o)}" for o in objs) + f" ({bg})"
    else:         # two objects, the second as a relative clause
        a, b = objs[0], objs[1]
        s = f"{_np(rng, a)} {_verb(rng, a)} near {_np(rng, b, 0)}, which {_verb(rng, b)}"
    if cam and rng.random() < (0.4 if full else 0.5) and t != 5:
        s = f"{s}, {cam}"
    s = cl(s) + "."
    return s


def captions_for(clip: dict, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, 2, int(clip["render_seed"])])
    if clip["split"] == "test":
        return [caption(rng, clip, full=True)]
    out: list[str] = []
    for _ in range(50):
        c = caption(rng, clip, full=len(out) == 0)   # the first train caption mentions everything too
        if c not in out:
            out.append(c)
        if len(out) == CAPTIONS_PER_TRAIN_CLIP:
            break
    return out


# ----------------------------------------------------------------------------- rendering

def _font(size: int, which: int) -> ImageFont.ImageFont:
    path = FONT_PATHS[which % len(FONT_PATHS)]
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _sprite(kind: str, rgb: tuple, size: int, rng: np.random.Generator) -> Image.Image:
    """RGBA sprite of side ~size: the glyph or icon filled with a textured colour, dark outline."""
    s = size
    pad = max(4, s // 8)
    mask = Image.new("L", (s + 2 * pad, s + 2 * pad), 0)
    d = ImageDraw.Draw(mask)
    cx = cy = (s + 2 * pad) / 2
    r = s / 2
    glyph = KINDS[kind][0]
    if glyph is not None:
        f = _font(int(s * 1.05), int(rng.integers(2)))
        d.text((cx, cy), glyph, font=f, fill=255, anchor="mm")
    elif kind == "star":
        pts = [(cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
        d.polygon(pts, fill=255)
    elif kind == "heart":
        q = r * 0.52
        d.ellipse([cx - 2 * q + 2, cy - r * 0.75, cx + 2, cy - r * 0.75 + 2 * q], fill=255)
        d.ellipse([cx - 2, cy - r * 0.75, cx + 2 * q - 2, cy - r * 0.75 + 2 * q], fill=255)
        d.polygon([(cx - 2 * q + 3, cy - r * 0.75 + q * 1.25), (cx + 2 * q - 3, cy - r * 0.75 + q * 1.25),
                   (cx, cy + r)], fill=255)
    elif kind == "arrow":
        d.polygon([(cx - r, cy - r * 0.22), (cx + r * 0.1, cy - r * 0.22), (cx + r * 0.1, cy - r * 0.6),
                   (cx + r, cy), (cx + r * 0.1, cy + r * 0.6), (cx + r * 0.1, cy + r * 0.22),
                   (cx - r, cy + r * 0.22)], fill=255)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        d.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=0)
    elif kind == "plus":
        t = r * 0.3
        d.rectangle([cx - r, cy - t, cx + r, cy + t], fill=255)
        d.rectangle([cx - t, cy - r, cx + t, cy + r], fill=255)
    m = np.asarray(mask, dtype=np.float32) / 255.0
    outline = np.asarray(mask.filter(ImageFilter.MaxFilter(5)), dtype=np.float32) / 255.0
    hh, ww = m.shape
    yy, xx = np.mgrid[0:hh, 0:ww]
    tex_kind = int(rng.integers(3))
    if tex_kind == 0:   # horizontal bands
        tex = 0.85 + 0.15 * np.sin(yy * (2 * math.pi / max(4, s / 5)))
    elif tex_kind == 1:  # top-lit shading
        tex = 1.1 - 0.35 * yy / hh
    else:               # speckle
        tex = 0.88 + 0.12 * rng.random((hh, ww))
    fill = np.clip(np.array(rgb, np.float32)[None, None, :] * tex[..., None], 0, 255)
    dark = np.full_like(fill, 18.0)
    rgbf = fill * m[..., None] + dark * (1 - m[..., None])
    alpha = np.clip(np.maximum(m, outline), 0, 1) * 255
    arr = np.concatenate([rgbf, alpha[..., None]], axis=-1).astype(np.uint8)
    return Image.fromarray(arr, "RGBA")


def _background(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A canvas larger than the frame (for the pan / zoom), float32 HxWx3 in 0..255."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 215, 3).astype(np.float32)
    other = rng.uniform(40, 215, 3).astype(np.float32)
    if kind == "noise":
        small = rng.uniform(0, 1, (h // 3 + 1, w // 3 + 1, 3)).astype(np.float32)
        img = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.NEAREST), np.float32) / 255
        return base * 0.55 + img * 110
    if kind == "stripes":
        period = rng.uniform(14, 30)
        ang = rng.uniform(0.3, 1.2) * rng.choice([-1, 1])
        t = (xx * math.cos(ang) + yy * math.sin(ang)) / period
        m = (np.sin(2 * math.pi * t) > 0).astype(np.float32)[..., None]
        return base * m + other * (1 - m)
    if kind == "gradient":
        third = rng.uniform(40, 215, 3).astype(np.float32)
        t = (yy / h)[..., None]
        u = (xx / w)[..., None]
        return (base * (1 - t) + other * t) * (0.75 + 0.25 * u) + third * 0.25 * (1 - u)
    if kind == "checker":
        sq = int(rng.integers(12, 26))
        m = (((xx // sq) + (yy // sq)) % 2).astype(np.float32)[..., None]
        return base * m + other * (1 - m)
    if kind == "bokeh":
        img = Image.new("RGB", (w, h), tuple(int(v * 0.5) for v in base))
        d = ImageDraw.Draw(img)
        for _ in range(int(w * h / 2500)):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 26)
            col = tuple(int(v) for v in rng.uniform(60, 255, 3))
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
        return np.asarray(img.filter(ImageFilter.GaussianBlur(5)), np.float32)
    # clouds: smooth value noise from a few octaves
    acc = np.zeros((h, w), np.float32)
    for octave, amp in ((8, 0.5), (16, 0.3), (40, 0.2)):
        small = rng.uniform(0, 1, (max(2, h // octave), max(2, w // octave))).astype(np.float32)
        acc += amp * np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BICUBIC), np.float32)
    acc = np.clip(acc, 0, 1)[..., None]
    return base * acc + other * (1 - acc)


def _trajectory(obj: dict, i: int, n: int, w: int, h: int, t: np.ndarray, rng, base: int) -> dict:
    """Per-frame centre x, y, scale, angle and visibility of one object (t in [0, 1])."""
    slot_x = w * (0.22 + 0.56 * (i + 0.5) / n) + rng.uniform(-0.04, 0.04) * w
    slot_y = h * rng.uniform(0.35, 0.65)
    x = np.full_like(t, slot_x)
    y = np.full_like(t, slot_y)
    scale = np.ones_like(t)
    angle = np.zeros_like(t)
    alpha = np.ones_like(t)
    a = obj["action"]
    phase = rng.uniform(0, 2 * math.pi)
    wob = 0.02 * w * np.sin(2 * math.pi * t * rng.uniform(0.5, 1.0) + phase)   # everything drifts a little
    if a in ("slide_left", "slide_right"):
        x0, x1 = w * rng.uniform(0.72, 0.85), w * rng.uniform(0.15, 0.28)
        if a == "slide_right":
            x0, x1 = x1, x0
        x = x0 + (x1 - x0) * t
        y = y + 0 * t
    elif a in ("rise", "fall"):
        y0, y1 = h * 0.82, h * 0.18
        if a == "fall":
            y0, y1 = y1, y0
        y = y0 + (y1 - y0) * t
        x = x + wob
    elif a == "bounce":
        hops = rng.uniform(2.0, 3.5)
        y = h * 0.78 - h * 0.5 * np.abs(np.sin(math.pi * hops * t + 0.3))
    elif a == "spin":
        turns = rng.uniform(1.2, 2.5) * rng.choice([-1, 1])
        angle = 360.0 * turns * t
        y = y + 0 * t
    elif a == "blink":
        rate = rng.uniform(2.0, 3.5)
        alpha = (np.sin(2 * math.pi * rate * t + phase) > -0.1).astype(np.float32)
        x = x + wob
    elif a == "grow":
        scale = 0.45 + 1.05 * t
    elif a == "shrink":
        scale = 1.5 - 1.05 * t
    elif a in ("enter", "leave"):
        side = rng.choice([-1, 1])
        out_x = w / 2 + side * (w / 2 + base)   # fully outside the frame
        if a == "enter":
            x = out_x + (slot_x - out_x) * np.clip(t / 0.6, 0, 1)
        else:
            x = slot_x + (out_x - slot_x) * np.clip((t - 0.4) / 0.6, 0, 1)
    return {"x": x, "y": y, "scale": scale, "angle": angle, "alpha": alpha}


def render_clip(clip: dict, out_dir: str, quiet: bool = True) -> dict:
    """Render one clip and encode it with ffmpeg; returns visibility stats."""
    rng = np.random.default_rng(clip["render_seed"])
    w, h = clip["size"]
    fps = clip["fps"]
    nf = max(2, int(round(clip["duration"] * fps)))
    cw, ch = int(w * 1.35), int(h * 1.35)
    canvas = np.clip(_background(clip["background"], cw, ch, rng), 0, 255).astype(np.uint8)
    canvas_img = Image.fromarray(canvas)
    t = np.linspace(0, 1, nf, dtype=np.float32)
    # camera: crop box on the canvas per frame
    cam = clip["camera"]
    if cam == "pan":
        sx = np.linspace(0, cw - w, nf) if rng.random() < 0.5 else np.linspace(cw - w, 0, nf)
        boxes = [(float(x), (ch - h) / 2, float(x) + w, (ch - h) / 2 + h) for x in sx]
    elif cam in ("zoom_in", "zoom_out"):
        z = np.linspace(1.3, 1.0, nf) if cam == "zoom_in" else np.linspace(1.0, 1.3, nf)
        boxes = [(cw / 2 - w * zz / 2, ch / 2 - h * zz / 2, cw / 2 + w * zz / 2, ch / 2 + h * zz / 2) for zz in z]
    else:
        boxes = [((cw - w) / 2, (ch - h) / 2, (cw + w) / 2, (ch + h) / 2)] * nf
    n = len(clip["objects"])
    base = int(h * rng.uniform(0.26, 0.34))
    sprites, trajs = [], []
    for i, obj in enumerate(clip["objects"]):
        sprites.append(_sprite(obj["kind"], COLOURS[obj["colour"]][0], base, rng))
        trajs.append(_trajectory(obj, i, n, w, h, t, rng, base))
    noise_sigma = rng.uniform(3, 9)
    noise_bank = [rng.normal(0, noise_sigma, (h, w, 3)).astype(np.float32) for _ in range(6)]
    ext = clip["container"]
    path = os.path.join(out_dir, f"{clip['id']}.{ext}")
    if ext == "webm":
        codec = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "0", "-crf", "34",
                 "-row-mt", "1"]
    else:
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "22", "-pix_fmt", "yuv420p"]
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "-", *codec, "-threads", "1", "-an", path]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    centre_lo, centre_hi = (w - h) / 2, (w + h) / 2
    visible = np.zeros(n)
    try:
        for f in range(nf):
            frame = canvas_img.resize((w, h), Image.BILINEAR, box=boxes[f]).convert("RGBA")
            for k, (spr, tr) in enumerate(zip(sprites, trajs)):
                if tr["alpha"][f] < 0.5:
                    continue
                sc = float(tr["scale"][f])
                im = spr
                if abs(sc - 1) > 0.02:
                    im = im.resize((max(2, int(spr.width * sc)), max(2, int(spr.height * sc))), Image.BILINEAR)
                if tr["angle"][f]:
                    im = im.rotate(float(tr["angle"][f]), resample=Image.BILINEAR, expand=True)
                x, y = float(tr["x"][f]), float(tr["y"][f])
                frame.alpha_composite(im, (int(x - im.width / 2), int(y - im.height / 2))) if (
                    -im.width < x - im.width / 2 < w and -im.height < y - im.height / 2 < h) else None
                if centre_lo <= x <= centre_hi and 0 <= y <= h:
                    visible[k] += 1
            arr = np.asarray(frame.convert("RGB"), np.float32) + noise_bank[f % len(noise_bank)]
            proc.stdin.write(np.clip(arr, 0, 255).astype(np.uint8).tobytes())
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
    except BrokenPipeError:
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"ffmpeg failed on {clip['id']}: {err.strip()[-500:]}")
    # "in centre": share of frames each object's centre lies in the centre square (what the
    # evaluation's centre crop of a 16:9 frame keeps)
    return {"id": clip["id"], "frames": nf, "centre_visible": [round(float(v / nf), 3) for v in visible]}


def _render_star(args):
    return render_clip(*args)


# ----------------------------------------------------------------------------- writing

def generate(out: Path, num_train: int, num_test: int, seed: int, workers: int | None = None,
             progress: bool = True, render: bool = True) -> dict:
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    clips, held = plan(num_train, num_test, seed)
    for c in clips:
        c["captions"] = captions_for(c, seed)
    train = [c for c in clips if c["split"] == "train"]
    test = [c for c in clips if c["split"] == "test"]
    msr = {"info": {"description": "second_style study collection", "seed": seed},
           "videos": [{"video_id": c["id"], "split": "train", "duration": c["duration"],
                       "category": 0} for c in train],
           "annotations": []}
    n = 0
    for c in train:
        for cap in c["captions"]:
            msr["annotations"].append({"image_id": c["id"], "caption": cap, "id": n})
            n += 1
    (out / "train.json").write_text(json.dumps(msr, indent=1))
    with (out / "train.jsonl").open("w") as f:
        for c in train:
            for cap in c["captions"]:
                f.write(json.dumps({"caption": cap, "clip_name": c["id"]}) + "\n")
    with (out / "test.csv").open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["key", "vid_key", "video_id", "sentence"])
        for i, c in enumerate(test):
            wr.writerow([f"ret{i}", f"ss{i}", c["id"], c["captions"][0]])
    held_set = set(held)
    t0 = time.time()
    stats = {}
    if render:
        jobs = [(c, str(out / "videos")) for c in clips]
        workers = workers or os.cpu_count() or 1
        it = None
        if workers == 1:
            it = map(_render_star, jobs)
            results = _consume(it, len(jobs), progress)
        else:
            with Pool(workers) as pool:
                results = _consume(pool.imap_unordered(_render_star, jobs, chunksize=2), len(jobs), progress)
        stats = {r["id"]: r for r in results}
    wall = time.time() - t0
    meta = {
        "seed": seed, "num_train": len(train), "num_test": len(test),
        "held_out_pairs": [list(p) for p in held],
        "test_with_held_out_pair": sum(any((o["kind"], o["colour"]) in held_set for o in c["objects"]) for c in test),
        "clips": [{k: c[k] for k in ("id", "split", "container", "size", "fps", "duration", "background",
                                     "camera", "objects", "captions")} for c in clips],
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    if render:
        vis = [v for r in stats.values() for v in r["centre_visible"]]
        summary = {"render_wall_s": round(wall, 1), "workers": workers,
                   "frames": int(sum(r["frames"] for r in stats.values())),
                   "object_centre_in_centre_square_mean": round(float(np.mean(vis)), 3),
                   "objects_never_in_centre_square": int(sum(v == 0 for v in vis)), "objects": len(vis),
                   "centre_visible": {k: r["centre_visible"] for k, r in sorted(stats.items())}}
        (out / "render_stats.json").write_text(json.dumps(summary, indent=1))
        meta["render"] = {k: v for k, v in summary.items() if k != "centre_visible"}
    return meta


def _consume(it, total, progress):
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=total, desc="render+encode", unit="clip", mininterval=5)
    return list(it)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.second_style.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--clips", required=True, type=int, help="training clips")
    ap.add_argument("--test-clips", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    meta = generate(a.out, a.clips, a.test_clips, a.seed, a.workers, progress=not a.no_progress)
    r = meta.get("render", {})
    print(json.dumps({"out": str(a.out), "train": meta["num_train"], "test": meta["num_test"],
                      "held_out_pairs": meta["held_out_pairs"], "test_with_held_out_pair": meta["test_with_held_out_pair"],
                      **r}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
