"""The benchmark's still-image caption set: one rendered frame of every train clip, captioned
as a picture, in the formats of CC3M and COCO Captions.

It plays the part CC3M plays beside WebVid in the peers' pre-training (Singularity, VindLU, ALPRO
...): images whose captions name what is there, never what happens. Each image is a frame of a
train clip's scene (the first frame, or the last when nothing is visible yet), so it shows the
same shapes, colours and backgrounds as the videos, and no test clip leaks into training. Its
captions come from the scene at that frame (colours after a change, only visible objects),
with synonyms drawn as the video captions draw theirs, and hold no word of time or motion.

Files (beside the videos; ``python -m preprocess`` reads both formats)::

    stills.tar                                   stills/<stem>.png (one per train clip)
    annotations/stills/cc3m_train.tsv            CC3M: caption<TAB>stills/<stem>.png, one row per image
    annotations/stills/coco_captions_train.json  COCO Captions: images[] + annotations[] (several captions per image)
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np

from pipeline.synthetic.grammar import Words
from pipeline.synthetic.plan import ClipPlan
from pipeline.synthetic.render import object_state, render_frame
from pipeline.synthetic.scene import Scene

_STILLS = 5  # purpose mixed into the seed (plan.py's streams use 1..4)
CAPTIONS_PER_IMAGE = 5  # as COCO Captions has
TAR = "stills.tar"
TSV = "annotations/stills/cc3m_train.tsv"
COCO = "annotations/stills/coco_captions_train.json"
TEMPLATES = ("{objects}", "a picture of {objects}", "an image of {objects}", "{objects} in a picture")


def still_frame(scene: Scene) -> int:
    """The frame shown: the first, unless nothing is visible there (every object appears later)."""
    if any(object_state(scene, i, 0).visible for i in range(len(scene.objects))):
        return 0
    return scene.num_frames - 1


def _position(scene: Scene, x: float) -> str:
    if x < 0.4 * scene.width:
        return "on the left"
    if x > 0.6 * scene.width:
        return "on the right"
    return "in the middle"


def still_caption(scene: Scene, t: int, rng: np.random.Generator | None = None) -> str:
    """What frame ``t`` shows, as a picture's caption (canonical wording if ``rng`` is None)."""
    w = Words(rng)
    states = [object_state(scene, i, t) for i in range(len(scene.objects))]
    # the colours the frame shows (after a colour change); shapes and sizes as planned
    shown = dataclasses.replace(scene, objects=tuple(
        dataclasses.replace(o, colour=s.colour) for o, s in zip(scene.objects, states)))
    phrases = []
    for i, state in enumerate(states):
        if not state.visible:
            continue
        phrase = w.noun_phrase(shown, i)
        if rng is None or w.chance(0.6):
            phrase += " " + _position(scene, state.x)
        phrases.append(phrase)
    text = " and ".join(phrases)
    template = TEMPLATES[0 if rng is None else int(rng.integers(len(TEMPLATES)))]
    text = template.format(objects=text)
    if w.chance(0.4):
        text += " " + w.background(scene)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def still_captions(scene: Scene, t: int, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct captions (fewer only if the wording runs out), canonical first."""
    out = [still_caption(scene, t)]
    for _ in range(count * 20):
        if len(out) >= count:
            break
        text = still_caption(scene, t, rng)
        if text not in out:
            out.append(text)
    return out


def png_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")  # lossless: preprocess makes the JPEG
    return buf.getvalue()


def write_stills(root: Path, clips: list[ClipPlan], seed: int) -> int:
    """The image tar and both annotation files under ``root``; returns the number of images.

    Rendering one frame per train clip costs well under a second for the default preset.
    """
    from pipeline.synthetic.writers import DeterministicTar

    train = [c for c in clips if c.split == "train"]
    tar = DeterministicTar(root / TAR)
    images, annotations, rows = [], [], []
    try:
        for n, c in enumerate(train):  # plan order is stem order: the tar stays sorted
            t = still_frame(c.scene)
            name = f"stills/{c.stem}.png"
            tar.add(name, png_bytes(render_frame(c.scene, t)))
            texts = still_captions(c.scene, t, np.random.default_rng([seed, _STILLS, n]), CAPTIONS_PER_IMAGE)
            rows.append(f"{texts[0]}\t{name}")
            images.append({"id": n, "file_name": name, "width": c.scene.width, "height": c.scene.height,
                           "clip": c.stem, "frame": t})
            annotations += [{"id": len(annotations) + k, "image_id": n, "caption": text}
                            for k, text in enumerate(texts)]
    finally:
        tar.close()
    (root / TSV).parent.mkdir(parents=True, exist_ok=True)
    (root / TSV).write_text("".join(r + "\n" for r in rows))
    info = {"description": "SMAUG synthetic benchmark, still frames of the train clips, COCO Captions layout"}
    (root / COCO).write_text(json.dumps({"info": info, "images": images, "annotations": annotations},
                                        indent=1, ensure_ascii=True) + "\n")
    return len(train)
