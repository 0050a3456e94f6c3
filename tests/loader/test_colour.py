"""The CPU backend's YUV->RGB conversion against the GPU path's reference conversion.

The reference (``colour.yuv420p_to_rgb_reference``, float64): bilinear chroma upsampling with
sample centres aligned, BT.601 limited-range matrix, which is what DALI's video decoder
outputs (``test_dali_cpu.py`` checks DALI against the same formula where DALI is installed).
Stated tolerance of the CPU frames: max 1 grey level against the float reference (numpy path:
measured 0.5, rounding only; the decoder's libswscale path: 0.51 on legal-range YUV, with rare
wraps on illegal extreme values, bounded below), and converting only a crop box equals
converting everything and cropping.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.data.colour import yuv420p_to_rgb_planar, yuv420p_to_rgb_reference
from train.data.decode import decode_all_frames, decode_sampled_frames, decode_sampled_planar


def previous_conversion(planes: np.ndarray) -> np.ndarray:
    """The conversion the CPU backend used before (torch, full frame), kept as a second oracle."""
    t, rows, w = planes.shape
    h = rows * 2 // 3
    x = torch.from_numpy(planes).float()
    chroma = F.interpolate(x[:, h:].reshape(t, 2, h // 2, w // 2), size=(h, w), mode="bilinear", align_corners=False)
    y = (x[:, :h] - 16.0) * (255.0 / 219.0)
    u, v = ((chroma - 128.0) * (255.0 / 224.0)).unbind(1)
    r, b = y + 1.402 * v, y + 1.772 * u
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], dim=-1).round_().clamp_(0, 255).to(torch.uint8).numpy()


def random_planes(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h * 3 // 2, w), dtype=np.uint8)


@pytest.mark.parametrize("h, w", [(96, 128), (6, 4), (2, 2), (128, 228)])
def test_within_one_level_of_the_float_reference_and_the_previous_conversion(h, w):
    planes = random_planes(3, h, w)  # random bytes: every colour, out-of-gamut ones included
    ours = yuv420p_to_rgb_planar(planes).transpose(0, 2, 3, 1).astype(np.float64)
    assert ours.shape == (3, h, w, 3)
    assert np.abs(ours - yuv420p_to_rgb_reference(planes)).max() <= 1.0
    assert np.abs(ours - previous_conversion(planes)).max() <= 1.0


def test_reference_is_the_textbook_formula_on_flat_colours():
    # flat planes: no chroma interpolation involved; compare with values computed by hand
    planes = np.zeros((1, 6, 4), np.uint8)
    planes[0, :4], planes[0, 4], planes[0, 5] = 81, 90, 240  # BT.601 limited-range pure red
    ref = yuv420p_to_rgb_reference(planes)[0]
    assert np.allclose(ref[..., 0], 255, atol=1.5) and np.all(ref[..., 1:] < 1.5)
    assert np.array_equal(yuv420p_to_rgb_planar(planes)[0, :, 0, 0], np.round(ref[0, 0]).astype(np.uint8))


def test_bilinear_chroma_is_centre_aligned_not_repeated():
    # one chroma column differs: the luma columns next to it get 3/4 and 1/4 of the step
    planes = np.full((1, 12, 8), 128, np.uint8)
    planes[0, :8] = 126  # mid grey
    u = planes[0, 8:10].reshape(4, 4)
    u[:, 2] = 192  # chroma column 2 covers luma columns 4-5
    ref = yuv420p_to_rgb_reference(planes)[0, 0, :, 2]  # blue row
    step = ref[4] - ref[0]  # 3/4 of the full step (1/4 comes from the neighbouring sample)
    assert step > 30 and np.allclose(ref[4], ref[5])
    assert np.allclose(ref[3] - ref[0], step / 3) and np.allclose(ref[6] - ref[0], step / 3)
    assert np.allclose(ref[2], ref[0]) and np.allclose(ref[7], ref[0])  # repeated chroma would move 4-5 only
    ours = yuv420p_to_rgb_planar(planes)[0, 2, 0].astype(np.float64)
    assert np.abs(ours - ref).max() <= 1.0


@pytest.mark.parametrize("box", [(0, 0, 96, 128), (1, 3, 50, 61), (7, 9, 89, 119), (33, 0, 63, 5), (95, 127, 1, 1)])
def test_converting_only_the_crop_box_equals_cropping_the_whole_frame(box):
    planes = random_planes(2, 96, 128, seed=1)
    top, left, height, width = box
    whole = yuv420p_to_rgb_planar(planes)[:, :, top : top + height, left : left + width]
    crop = yuv420p_to_rgb_planar(planes, box)
    assert crop.shape == (2, 3, height, width)
    assert np.abs(crop.astype(int) - whole).max() <= 1 and (crop == whole).mean() > 0.999


@pytest.mark.parametrize("box", [(0, 0, 97, 128), (-1, 0, 10, 10), (0, 120, 10, 10), (0, 0, 0, 5)])
def test_a_box_outside_the_frame_is_an_error_naming_it(box):
    with pytest.raises(ValueError, match=r"crop box .* does not fit a 128x96 frame"):
        yuv420p_to_rgb_planar(random_planes(1, 96, 128), box)


def test_decoded_clip_matches_the_reference_and_crops_agree(h264_shards):
    key = max(h264_shards.videos, key=lambda k: h264_shards.metas[k]["video"]["num_frames"])
    data = h264_shards.videos[key]
    full = decode_all_frames(data).astype(np.float64)
    import av, io  # noqa: E401

    with av.open(io.BytesIO(data)) as container:
        planes = np.stack([f.to_ndarray() for f in container.decode(video=0)])
    assert np.abs(full - yuv420p_to_rgb_reference(planes)).max() <= 1.0
    n = h264_shards.metas[key]["video"]["num_frames"]
    indices = [3, 3, 17, n - 1, 2]
    box = (5, 11, 80, 90)
    crop = decode_sampled_planar(data, indices, keyint=12, box=box)
    assert np.array_equal(crop.transpose(0, 2, 3, 1), decode_sampled_frames(data, indices)[:, 5:85, 11:101])
    assert np.abs(crop.transpose(0, 2, 3, 1) - full[indices][:, 5:85, 11:101]).max() <= 1


def legal_range_planes(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noisy, saturated content inside the range encoders produce: Y 16-235, chroma 16-240."""
    rng = np.random.default_rng(seed)
    y = np.clip(rng.normal(128, 45, (t, h, w)), 16, 235)
    c = np.clip(rng.normal(128, 35, (t, h // 2, w)), 16, 240)
    return np.concatenate([y, c], 1).astype(np.uint8)


@pytest.mark.parametrize("h, w", [(96, 128), (128, 228)])
def test_swscale_path_is_within_one_level_of_the_reference(h, w):
    """The decoder's path (libswscale set up as the reference). Stated tolerance: max 1 grey level
    on legal-range YUV; on arbitrary bytes (illegal combinations of extreme Y and chroma)
    libswscale's fixed point can wrap, on at most 1 pixel in 10,000 (measured 1 in 110,000)."""
    import av

    from train.data.colour import frames_to_rgb_planar

    def convert(planes, box=None):
        return frames_to_rgb_planar([av.VideoFrame.from_ndarray(p, format="yuv420p") for p in planes], box)

    legal = legal_range_planes(3, h, w, seed=2)
    ours = convert(legal).transpose(0, 2, 3, 1).astype(np.float64)
    assert np.abs(ours - yuv420p_to_rgb_reference(legal)).max() <= 1.0
    assert np.abs(ours - yuv420p_to_rgb_planar(legal).transpose(0, 2, 3, 1)).max() <= 1.0
    anything = random_planes(3, h, w, seed=2)
    diff = np.abs(convert(anything).transpose(0, 2, 3, 1) - yuv420p_to_rgb_reference(anything))
    assert (diff > 1).mean() < 1e-4
    box = (1, 1, h - 2, w - 3)
    assert np.array_equal(convert(legal, box), convert(legal)[:, :, 1 : h - 1, 1 : w - 2])
    with pytest.raises(ValueError, match="crop box"):
        convert(legal, (0, 0, h + 1, w))
