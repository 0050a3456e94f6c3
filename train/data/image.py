"""Still-image samples (``<key>.jpg``, written by :mod:`preprocess.images`) as clips.

An image sample's JSON has a one-frame ``video`` record, so :func:`samples.plan_sample` plans
it like any clip: ``sample_frame_indices(1, T, ...)`` gives T zeros, one crop box and one set of
colour factors for the clip. Decoding the single frame and repeating it T times therefore
gives a ``[T, H, W, 3]`` clip that the video path's augmentation and normalisation treat
exactly as a video's frames.

Why repeat the frame rather than feed one frame: Singularity and OmniVL feed images as a
single frame (T = 1) and let the temporal part cope -- Singularity's temporal attention sees
one token step, OmniVL's decoupled encoder skips the temporal attention for images. Here the
model's shapes are fixed by ``num_frames`` (the sparsified / masked tubes and the temporal
position table expect T frames) and a batch mixes videos and images, so a one-frame clip would
need its own batch or padding and masking. A repeated frame is a static video: it fits the
same batch, the temporal embedding is used as for video, and a clip of identical frames holds
no motion, which is what an image has. The cost is decoding once and computing T frames of
tokens for a sample that holds one frame's information.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from train.data.decode import CorruptVideo

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG


def is_image_sample(meta: dict, data: bytes) -> bool:
    """Does this sample hold a still image (the JSON says so, or the bytes are JPEG / PNG)?"""
    return meta.get("media") == "image" or bytes(data[:8]).startswith(_MAGIC)


def decode_image_clip(data: bytes, indices: Sequence[int]) -> np.ndarray:
    """RGB uint8 ``[T, H, W, 3]``: the one frame repeated ``len(indices)`` times (all indices 0)."""
    from PIL import Image

    bad = [int(i) for i in indices if int(i) != 0]
    if bad:
        raise CorruptVideo(f"an image has one frame, frame {bad[0]} needed (video.num_frames is not 1?)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            frame = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # Pillow's errors for broken data
        raise CorruptVideo(f"image decode failed: {err}") from err
    # A view with stride 0 along T; the crop in apply_augment_torch copies it once.
    return np.broadcast_to(frame, (len(indices), *frame.shape))


def check_image(data: bytes, indices: Sequence[int], width: int, height: int) -> None:
    """The DALI path's pre-flight for an image (DALI fails a whole batch on one bad sample):
    it decodes (a 128 px JPEG costs well under a millisecond) and has the promised size."""
    frames = decode_image_clip(data, indices[:1])
    if frames.shape[1:3] != (height, width):
        raise CorruptVideo(f"image is {frames.shape[2]}x{frames.shape[1]}, metadata says {width}x{height}")
