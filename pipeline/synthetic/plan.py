"""The dataset plan: which clips exist, their split, format, size, and scene.

Planning happens in one process and is cheap; only rendering and encoding run in the
worker pool. Every random choice comes from generators seeded by ``(seed, purpose, index)``,
so a clip's content does not depend on the number of workers or the order they finish in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.encode import FORMATS, VideoFormat
from pipeline.synthetic.grammar import QA, MultipleChoice, captions, multiple_choice, open_questions
from pipeline.synthetic.scene import COLOURS, SHAPES, Scene, sample_scene, swap_order

SPLITS = ("train", "val", "test")
# The split of the extra pre-training clips (``synthetic.pretrain_clips``): they go into the
# pre-training captions (webvid_train.csv) only, never into a fine-tuning or test file.
PRETRAIN = "pretrain"
# Purposes mixed into the seed so the streams of random numbers never overlap.
_UNITS, _HELD_OUT, _SCENE, _TEXT, _PRETRAIN = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Unit:
    """A single clip, or a temporal-order pair (two clips, same scene, swapped events)."""

    index: int
    size: int  # 1 or 2
    split: str
    held_out: bool
    format: VideoFormat


@dataclass(frozen=True)
class ClipPlan:
    stem: str
    split: str
    format: VideoFormat
    scene: Scene
    held_out: bool
    pair_id: str | None
    captions: tuple[str, ...]
    qa: tuple[QA, ...]
    mc: tuple[MultipleChoice, ...]

    @property
    def member(self) -> str:
        """Name inside videos.tar."""
        return f"videos/{self.stem}.{self.format.ext}"


def held_out_combinations(seed: int, fraction: float) -> list[tuple[str, str]]:
    """(colour, shape) pairs kept out of train and val: distinct colours, shapes cycling,
    so every colour and every shape on its own is still seen in training."""
    count = round(fraction * len(COLOURS) * len(SHAPES))
    if fraction > 0:
        count = max(count, 1)
    rng = np.random.default_rng([seed, _HELD_OUT])
    colours = [list(COLOURS)[i] for i in rng.permutation(len(COLOURS))]
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    return sorted((colours[i], shapes[i % len(shapes)]) for i in range(count))


def plan_units(cfg: SyntheticConfig) -> list[Unit]:
    rng = np.random.default_rng([cfg.seed, _UNITS])
    n = cfg.clip_count
    nonempty = sum(f > 0 for f in (cfg.train_fraction, cfg.val_fraction, cfg.test_fraction))
    # at most n // 2 pairs, and enough units left for every non-empty split
    pairs = min(int(round(n * cfg.pair_fraction / 2)), n // 2, n - nonempty)
    sizes = [2] * pairs + [1] * (n - 2 * pairs)
    sizes = [sizes[i] for i in rng.permutation(len(sizes))]
    splits = _assign_splits(sizes, cfg)
    # Formats cycle over units in blocks (each block a fresh permutation), so even a tiny
    # dataset holds every container/codec kind.
    formats: list[str] = []
    while len(formats) < len(sizes):
        formats += [cfg.formats[i] for i in rng.permutation(len(cfg.formats))]
    test_units = [i for i, s in enumerate(splits) if s == "test"]
    held = set()
    if cfg.held_out_fraction > 0 and cfg.held_out_test_share > 0 and test_units:
        k = int(round(cfg.held_out_test_share * len(test_units)))
        if len(test_units) >= 2:
            k = min(max(k, 1), len(test_units) - 1)  # test keeps seen and unseen clips
        held = {test_units[i] for i in rng.permutation(len(test_units))[:k]}
    return [Unit(i, size, splits[i], i in held, FORMATS[formats[i]]) for i, size in enumerate(sizes)]


def _assign_splits(sizes: list[int], cfg: SyntheticConfig) -> list[str]:
    """Walk the (shuffled) units, filling train, then val, then test by clip counts."""
    n = sum(sizes)
    bounds = np.cumsum([cfg.train_fraction * n, cfg.val_fraction * n])
    out, start = [], 0
    for size in sizes:
        out.append("train" if start < bounds[0] - 1e-9 else "val" if start < bounds[1] - 1e-9 else "test")
        start += size
    # Tiny datasets: every split with a positive fraction gets at least one unit.
    for split, frac in zip(SPLITS, (cfg.train_fraction, cfg.val_fraction, cfg.test_fraction)):
        if frac > 0 and split not in out:
            donor = max(SPLITS, key=out.count)
            out[len(out) - 1 - out[::-1].index(donor)] = split
    return out


def plan_clips(cfg: SyntheticConfig) -> tuple[list[ClipPlan], list[tuple[str, str]]]:
    """Every clip of the benchmark, in stem order, and the held-out combinations."""
    held_out = held_out_combinations(cfg.seed, cfg.held_out_fraction)
    return _clips_of(plan_units(cfg), cfg, held_out, stream=[cfg.seed], prefix="clip",
                     pair_prefix="pair"), held_out


def plan_pretrain_units(cfg: SyntheticConfig) -> list[Unit]:
    """``cfg.pretrain_clips`` more clips, all for pre-training: pairs and formats drawn as the
    benchmark's are, none held out."""
    rng = np.random.default_rng([cfg.seed, _PRETRAIN, _UNITS])
    n = cfg.pretrain_clips
    pairs = min(int(round(n * cfg.pair_fraction / 2)), n // 2)
    sizes = [2] * pairs + [1] * (n - 2 * pairs)
    sizes = [sizes[i] for i in rng.permutation(len(sizes))]
    formats: list[str] = []
    while len(formats) < len(sizes):
        formats += [cfg.formats[i] for i in rng.permutation(len(cfg.formats))]
    return [Unit(i, size, PRETRAIN, False, FORMATS[formats[i]]) for i, size in enumerate(sizes)]


def plan_pretrain_clips(cfg: SyntheticConfig, held_out: list[tuple[str, str]]) -> list[ClipPlan]:
    """Extra pre-training clips beyond the benchmark (stems ``pretrain_00000`` ...).

    Same distribution as the benchmark's train clips, from random streams of their own (so the
    benchmark's clips, splits and files are the same with or without them), and never showing
    a combination in ``held_out``: the test split's unseen combinations stay unseen.
    """
    if cfg.pretrain_clips == 0:
        return []
    return _clips_of(plan_pretrain_units(cfg), cfg, held_out, stream=[cfg.seed, _PRETRAIN], prefix=PRETRAIN,
                    pair_prefix=f"{PRETRAIN}_pair")


def _clips_of(units: list[Unit], cfg: SyntheticConfig, held_out: list[tuple[str, str]], *,
              stream: list[int], prefix: str, pair_prefix: str) -> list[ClipPlan]:
    """Scenes, captions and questions of ``units``; ``stream`` seeds every draw, stems are
    ``<prefix>_<i>`` and pairs ``<pair_prefix>_<unit>``."""
    held_set = set(held_out)

    def allowed(colour: str, shape: str) -> bool:
        return (colour, shape) not in held_set

    clips: list[ClipPlan] = []
    for unit in units:
        rng = np.random.default_rng([*stream, _SCENE, unit.index])
        w, h = cfg.sizes[int(rng.integers(len(cfg.sizes)))]
        fps = cfg.gif_fps if unit.format.name == "gif" else cfg.fps[int(rng.integers(len(cfg.fps)))]
        duration = rng.uniform(*cfg.duration_range)
        num_frames = max(int(round(duration * fps)), 8)
        first_combo = held_out[int(rng.integers(len(held_out)))] if unit.held_out else None
        story_length = 2 if unit.size == 2 else int(rng.integers(1, 3))
        scene = sample_scene(
            rng, width=w, height=h, fps=fps, num_frames=num_frames, max_objects=cfg.max_objects,
            story_length=story_length, swappable=unit.size == 2, allowed=allowed,
            first_combo=first_combo,
        )
        scenes = [scene, swap_order(scene)] if unit.size == 2 else [scene]
        pair_id = f"{pair_prefix}_{unit.index:05d}" if unit.size == 2 else None
        for scene in scenes:
            stem = f"{prefix}_{len(clips):05d}"
            text_rng = np.random.default_rng([*stream, _TEXT, len(clips)])
            clips.append(ClipPlan(
                stem=stem, split=unit.split, format=unit.format, scene=scene,
                held_out=bool(scene.colour_states() & held_set), pair_id=pair_id,
                captions=tuple(captions(scene, text_rng, cfg.captions_per_clip)),
                qa=tuple(open_questions(scene)), mc=tuple(multiple_choice(scene, text_rng)),
            ))
    return clips
