"""Per-clip augmentations that keep the captions true.

Parameters are drawn once per clip (:func:`draw_augment`) from the sample's own RNG, then
applied by either backend: :func:`apply_augment_torch` here on the CPU, and the same
operations as DALI ops in ``dali_backend``. Every frame of a clip gets the same crop and
colour change, so motion and colours stay coherent across time.

Not here on purpose:
- horizontal flip: captions say "moves left"/"on the right"; a mirrored clip would make them
  false, so there is no flip at all (``LoaderConfig.horizontal_flip`` is rejected);
- strong hue jitter: captions name colours; hue rotation defaults to 0 degrees.

The test view (``view``): ``centre`` cuts each frame to its centre square (the ImageNet habit);
``whole`` resizes the whole frame to the square, as Singularity and VindLU evaluate. The centre
square of a 16:9 frame drops 44% of its width; the whole view squeezes it into a shape the
training boxes (aspect 3:4 to 4:3) never show. Each won on one of two sets (studies/view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from train.data.config import LoaderConfig


@dataclass(frozen=True)
class Augment:
    """One clip's crop box (source pixels) and colour factors (1.0 / 0 degrees = unchanged)."""

    top: int
    left: int
    height: int
    width: int
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # degrees


TEST_VIEWS = ("centre", "whole")


def centre_square(height: int, width: int) -> tuple[int, int, int, int]:
    """Resize-short-side-then-centre-crop to a square equals this crop followed by a resize."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def random_resized_box(height: int, width: int, scale, ratio, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box covering ``scale`` of the area with aspect ``ratio`` (Inception-style crop)."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return centre_square(height, width)


def whole_frame(height: int, width: int) -> tuple[int, int, int, int]:
    """The whole frame as a crop box: the resize to a square then squeezes a wide frame."""
    return 0, 0, height, width


def eval_box(height: int, width: int, view: str) -> tuple[int, int, int, int]:
    """The evaluation crop box of ``view`` (:data:`TEST_VIEWS`)."""
    if view == "centre":
        return centre_square(height, width)
    if view == "whole":
        return whole_frame(height, width)
    raise ValueError(f"unknown test view {view!r} (one of {', '.join(TEST_VIEWS)})")


def draw_augment(cfg: LoaderConfig, height: int, width: int, *, train: bool, rng: np.random.Generator | None,
                 view: str = "centre") -> Augment:
    """Training: a random box and colour factors from ``rng``. Evaluation: ``view``'s box, no colour change."""
    if not train:
        return Augment(*eval_box(height, width, view))
    box = random_resized_box(height, width, cfg.crop_scale, cfg.crop_ratio, rng)
    return Augment(
        *box,
        brightness=float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)),
        contrast=float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
        saturation=float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
        hue=float(rng.uniform(-cfg.hue, cfg.hue)),
    )


# RGB <-> YIQ; hue rotates the I/Q plane, saturation scales it (the transform DALI's fn.hsv uses).
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def hue_saturation_matrix(hue_degrees: float, saturation: float) -> np.ndarray:
    """3x3 matrix M with rgb_out = M @ rgb_in, equal to DALI's ``fn.hsv(hue=, saturation=)``.

    DALI rotates I/Q clockwise for a positive hue (checked against fn.hsv in the tests), hence
    the minus sign.
    """
    h = -math.radians(hue_degrees)
    rot = np.array([[1, 0, 0], [0, math.cos(h), -math.sin(h)], [0, math.sin(h), math.cos(h)]])
    sat = np.diag([1.0, saturation, saturation])
    return _YIQ2RGB @ sat @ rot @ _RGB2YIQ


def apply_augment_torch(frames: np.ndarray, aug: Augment, cfg: LoaderConfig) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> normalised float32 ``[T, 3, S, S]`` (S = cfg.image_size)."""
    crop = frames[:, aug.top : aug.top + aug.height, aug.left : aug.left + aug.width]
    return apply_augment_to_crop(np.ascontiguousarray(crop.transpose(0, 3, 1, 2)), aug, cfg)


def apply_augment_to_crop(crop: np.ndarray, aug: Augment, cfg: LoaderConfig) -> torch.Tensor:
    """The crop box already cut, uint8 ``[T, 3, h, w]`` -> normalised float32 ``[T, 3, S, S]``."""
    x = torch.from_numpy(crop).float()
    size = cfg.image_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp_(0, 255)
    if aug.hue != 0.0 or aug.saturation != 1.0:
        m = torch.from_numpy(hue_saturation_matrix(aug.hue, aug.saturation)).float()
        x = torch.einsum("ij,tjhw->tihw", m, x).clamp_(0, 255)
    if aug.brightness != 1.0 or aug.contrast != 1.0:
        x = (aug.brightness * (128.0 + aug.contrast * (x - 128.0))).clamp_(0, 255)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std
