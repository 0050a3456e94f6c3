"""The whole frame instead of its centre square: what the model sees of a wide clip.

Why: evaluation cuts each frame to its centre square (``train.data.augment.centre_square``) and
training draws a random box of aspect 3:4 to 4:3 (``random_resized_box``), the ImageNet habit.
On a 16:9 frame the centre square drops 44% of the width, and a caption names everything it
shows: 23 of the built-in benchmark's 100 test clips start with an object whose centre lies
outside the centre square (19 of its 34 16:9 clips), and the same holds for any collection of
wide videos.

What changes (nothing else: frames, timing, colours and captions are drawn as before):
- the test view is the whole frame resized to the model's square (``train.data.augment.whole_frame``), as
  Singularity and VindLU evaluate (``Resize((S, S))``); objects in a wide frame look wider
  (the project's evaluation does this with ``eval.view: whole`` since 2026-12-05);
- the training box takes its aspect relative to the frame's own (``frame_relative_box``), so the
  largest box is the whole frame, squeezed as the test view squeezes it, and a box of ratio 1
  has the frame's shape.

``install()`` swaps ``train.data.augment.draw_augment`` (and the name ``train.data.samples``
imported) for the version above; the loader's worker processes are forked after it, so they
inherit it. It is a study: ``train/`` and ``params.yaml`` stay as they are.
"""

from __future__ import annotations

import dataclasses

import numpy as np

VIEWS = ("centre", "whole")


def frame_relative_box(height: int, width: int, scale, ratio, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box covering ``scale`` of the area whose aspect is ``ratio`` times the frame's own (a box
    of scale 1 and ratio 1 is the whole frame): the loader's Inception-style box with its aspect
    range moved to the frame's."""
    from train.data.augment import random_resized_box

    aspect = width / height
    return random_resized_box(height, width, scale, (ratio[0] * aspect, ratio[1] * aspect), rng)


def install(view: str) -> None:
    """Make the loaders (training, fine-tuning, evaluation) draw ``view``'s boxes."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r} (one of {', '.join(VIEWS)})")
    if view == "centre":
        return
    import train.data.augment as augment
    import train.data.samples as samples

    original = getattr(augment.draw_augment, "original", augment.draw_augment)

    def draw_augment(cfg, height: int, width: int, *, train: bool, rng, view: str = "whole"):
        if not train:
            return augment.Augment(*augment.whole_frame(height, width))
        colours = original(cfg, height, width, train=True, rng=rng)  # the box it drew is replaced
        box = frame_relative_box(height, width, cfg.crop_scale, cfg.crop_ratio, rng)
        return dataclasses.replace(colours, top=box[0], left=box[1], height=box[2], width=box[3])

    draw_augment.original = original
    augment.draw_augment = draw_augment
    samples.draw_augment = draw_augment
