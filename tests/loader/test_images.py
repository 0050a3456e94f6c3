"""Still images as clips on the CPU backend: a shard mixing H.264 clips and preprocess-made JPEGs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from preprocess.config import PreprocessConfig
from preprocess.images import normalise_image
from tests.loader.conftest import DURATIONS, HEIGHT, meta_for
from train.data import LoaderConfig, build_loader
from train.data.image import decode_image_clip

N_IMAGES = 4


def make_images(folder: Path) -> dict[str, tuple[bytes, dict]]:
    """key -> (jpg bytes, JSON) made by preprocess.images from 160x120 PIL pictures."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig(short_side=HEIGHT, cache_dir=None)
    out = {}
    rng = np.random.default_rng(0)
    for n in range(N_IMAGES):
        key = f"img_{n:05d}"
        pixels = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
        pixels[:, : 40 * (n + 1)] = (30 * n, 200, 90)  # each image differs in a visible way
        src = folder / f"{key}_src.png"
        Image.fromarray(pixels).save(src)
        probe, outputs = normalise_image(src, folder, key, cfg)
        video = outputs[0]["video"]
        meta = {"key": key, "source": src.name, "format": "cc3m", "captions": [f"{key} a still picture"],
                "qa": [], "split": "train", "media": "image", "video": video,
                "source_probe": {k: probe[k] for k in ("width", "height")}, "normalize": outputs[0]["normalize"],
                "extra": {}}
        out[key] = (Path(outputs[0]["path"]).read_bytes(), meta)
    return out


def write_mixed(folder: Path, members: list[tuple[str, str, bytes, bytes | dict]], per_shard: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(0, len(members), per_shard):
        with wds.TarWriter(str(folder / f"shard-{s // per_shard:06d}.tar")) as sink:
            for key, ext, data, meta in members[s: s + per_shard]:
                raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
                sink.write({"__key__": key, ext: data, "json": raw})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, clip_cache):
    """4 H.264 clips and 4 images interleaved in 2 shards of 4 (each shard holds both kinds)."""
    tmp = tmp_path_factory.mktemp("mixed")
    images = make_images(tmp / "images")
    members, data = [], {}
    for n, (key, (jpg, meta)) in enumerate(images.items()):
        vkey = f"clip_{n:05d}"
        vmeta = meta_for(vkey, DURATIONS[n], "h264", [f"{vkey} a moving pattern"])
        members.append((vkey, "mp4", clip_cache[("h264", n)], vmeta))
        members.append((key, "jpg", jpg, meta))
        data[key] = jpg
    write_mixed(tmp / "shards", members, per_shard=4)
    return {"folder": tmp / "shards", "images": data, "keys": [m[0] for m in members]}


def to_pixels(video: torch.Tensor, cfg: LoaderConfig) -> torch.Tensor:
    mean = torch.tensor(cfg.mean).view(3, 1, 1) * 255
    std = torch.tensor(cfg.std).view(3, 1, 1) * 255
    return video * std + mean


def test_eval_batches_mix_videos_and_images(mixed):
    cfg = LoaderConfig(num_workers=0, shuffle_buffer=0, batch_size=3, image_size=96)  # 96: a crop of the 128x96 JPEG, no resize
    loader = build_loader(cfg, str(mixed["folder"]), train=False, seed=0)
    seen = []
    for batch in loader:
        b = len(batch["key"])
        assert batch["video"].shape == (b, cfg.num_frames, 3, cfg.image_size, cfg.image_size)
        for j, key in enumerate(batch["key"]):
            if key not in mixed["images"]:
                assert len(set(batch["frame_indices"][j].tolist())) > 1  # a video: distinct frames
                continue
            assert batch["frame_indices"][j].eq(0).all()
            clip = batch["video"][j]
            assert all(torch.equal(clip[0], clip[t]) for t in range(1, cfg.num_frames))
            # eval: the centre 96x96 of the 128x96 JPEG, no resize, so exact pixels
            with Image.open(io.BytesIO(mixed["images"][key])) as im:
                assert im.size == (128, 96)
                rgb = np.asarray(im.convert("RGB"))
            want = torch.from_numpy(rgb[:, 16:112].copy()).permute(2, 0, 1).float()
            assert (to_pixels(clip[0], cfg) - want).abs().max() < 1e-3
            assert batch["text"][j] == f"{key} a still picture"
        seen += batch["key"]
    assert sorted(seen) == sorted(mixed["keys"]) and loader.stats["skipped"] == 0


def test_train_batches_augment_images_like_videos(mixed):
    cfg = LoaderConfig(num_workers=2, shuffle_buffer=4, batch_size=4, image_size=64)
    loader = build_loader(cfg, str(mixed["folder"]), train=True, seed=5)
    seen, image_clips = [], []
    for batch in loader:
        assert batch["video"].shape == (len(batch["key"]), cfg.num_frames, 3, 64, 64)
        for j, key in enumerate(batch["key"]):
            if key in mixed["images"]:
                clip = batch["video"][j]
                assert all(torch.equal(clip[0], clip[t]) for t in range(1, cfg.num_frames))
                image_clips.append(clip[0])
        seen += batch["key"]
    assert sorted(seen) == sorted(mixed["keys"])
    assert len(image_clips) == N_IMAGES
    # the random crop and colour differ between images: not one identical frame for all
    assert not all(torch.equal(image_clips[0], c) for c in image_clips[1:])


@pytest.mark.parametrize("backend", ["cpu", "dali"])
def test_corrupt_image_is_skipped_with_its_reason(mixed, tmp_path, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali", reason="nvidia-dali is not installed")
    from train.data.loader import VideoTextLoader

    key = next(iter(mixed["images"]))
    good = mixed["images"][key]
    meta = {"key": "img_bad", "media": "image", "captions": ["x"], "qa": [],
            "video": {"num_frames": 1, "width": 128, "height": 96, "fps": None}}
    ok_meta = dict(meta, key="img_ok")
    write_mixed(tmp_path, [("img_bad", "jpg", good[: len(good) // 3], meta), ("img_ok", "jpg", good, ok_meta)],
                per_shard=2)
    loader = VideoTextLoader(LoaderConfig(num_workers=0, shuffle_buffer=0, batch_size=2), str(tmp_path),
                             train=False, seed=0, backend=backend, dali_device="cpu")
    keys = [k for batch in loader for k in batch["key"]]
    assert keys == ["img_ok"]
    assert loader.stats["skipped"] == 1
    (bad_key, reason), = loader.stats["skipped_keys"]
    assert bad_key == "img_bad" and "image decode failed" in reason


def test_image_clip_needs_frame_zero():
    with pytest.raises(ValueError, match="frame 3 needed"):
        decode_image_clip(b"\xff\xd8\xff", [0, 3])


@pytest.fixture(scope="module")
def mixed_vp9(tmp_path_factory, clip_cache):
    """2 VP9 clips (DALI's CPU decoder has no H.264) and 2 images in one shard."""
    tmp = tmp_path_factory.mktemp("mixed_vp9")
    images = list(make_images(tmp / "images").items())[:2]
    members = []
    for n, (key, (jpg, meta)) in enumerate(images):
        vkey = f"vp9_{n:05d}"
        members.append((vkey, "webm", clip_cache[("vp9", n)], meta_for(vkey, DURATIONS[n], "vp9", [f"{vkey} moves"])))
        members.append((key, "jpg", jpg, meta))
    write_mixed(tmp / "shards", members, per_shard=4)
    return {"folder": tmp / "shards", "images": {k for k, _ in images}, "keys": [m[0] for m in members]}


@pytest.mark.parametrize("train, size, view", [(True, 64, "centre"), (False, 96, "centre"), (False, 96, "whole")])
def test_dali_cpu_reads_images_like_the_cpu_backend(mixed_vp9, train, size, view):
    pytest.importorskip("nvidia.dali", reason="nvidia-dali is not installed")
    from train.data.loader import VideoTextLoader

    cfg = LoaderConfig(num_workers=0, batch_size=4, shuffle_buffer=0, image_size=size)
    dali_loader = VideoTextLoader(cfg, str(mixed_vp9["folder"]), train=train, seed=2, backend="dali",
                                  dali_device="cpu", view=view)
    cpu_loader = VideoTextLoader(cfg, str(mixed_vp9["folder"]), train=train, seed=2, backend="cpu", view=view)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255
    seen = []
    for bd, bc in zip(dali_loader, cpu_loader, strict=True):
        assert bd["key"] == bc["key"] and torch.equal(bd["frame_indices"], bc["frame_indices"])
        assert bd["video"].shape == bc["video"].shape == (len(bd["key"]), cfg.num_frames, 3, size, size)
        for j, key in enumerate(bd["key"]):
            clip = bd["video"][j].cpu()
            diff = ((clip - bc["video"][j]) * std).abs()
            if key in mixed_vp9["images"]:
                assert all(torch.equal(clip[0], clip[t]) for t in range(1, cfg.num_frames))
            # eval at 96 px is a plain centre crop: the decoders agree to rounding; with a resize,
            # the two resize kernels differ a little at edges (as for video, test_dali_cpu.py)
            assert (diff.max() <= 1.01) if (size == 96 and not train and view == "centre") else (diff.mean() < 1.0), key
        seen += bd["key"]
    assert sorted(seen) == sorted(mixed_vp9["keys"]) and dali_loader.stats["skipped"] == 0


def test_preprocessed_image_shards_load(tmp_path):
    """python -m preprocess on a CC3M TSV, then the loader on its output: one pipeline, no glue."""
    from tests.preprocess.helpers import params_file, run_cli

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    lines = []
    for n in range(3):
        Image.fromarray(rng.integers(0, 255, size=(90 + 10 * n, 150, 3), dtype=np.uint8)).save(folder / f"p{n}.jpg")
        lines.append(f"picture number {n}\tp{n}.jpg")
    (tmp_path / "cc.tsv").write_text("\n".join(lines) + "\n")
    params = params_file(tmp_path, short_side=HEIGHT, cache_dir=None, shard_samples=2)
    out = tmp_path / "shards"
    run_cli("--annotations", str(tmp_path / "cc.tsv"), "--videos", str(folder), "--out", str(out),
            "--params", str(params), "--workers", "1")
    cfg = LoaderConfig(num_workers=0, shuffle_buffer=0, batch_size=2, image_size=64)
    loader = build_loader(cfg, str(out), train=True, seed=0)
    texts = []
    for batch in loader:
        assert batch["video"].shape == (len(batch["key"]), cfg.num_frames, 3, 64, 64)
        for clip in batch["video"]:
            assert all(torch.equal(clip[0], clip[t]) for t in range(1, cfg.num_frames))
        texts += batch["text"]
    assert sorted(texts) == [f"picture number {n}" for n in range(3)] and loader.stats["skipped"] == 0


def test_image_clip_equals_the_video_path_on_the_repeated_frame(mixed):
    """decode_clip augments the one frame once; the video path on T copies gives the same clip."""
    from train.data.augment import apply_augment_torch
    from train.data.cpu_backend import decode_clip
    from train.data.samples import plan_sample
    from train.data.shards import RawSample

    cfg = LoaderConfig(image_size=64, hue=10.0)
    key, jpg = next(iter(mixed["images"].items()))
    meta = {"key": key, "media": "image", "captions": ["x"], "qa": [],
            "video": {"num_frames": 1, "width": 128, "height": 96, "fps": None}}
    plan = plan_sample(RawSample(key, jpg, meta), cfg, train=True, text="caption", seed=4, epoch=0)
    assert plan.augment.saturation != 1.0 and plan.augment.hue != 0.0  # a real colour draw
    with Image.open(io.BytesIO(jpg)) as im:
        frame = np.asarray(im.convert("RGB"))
    reference = apply_augment_torch(np.repeat(frame[None], cfg.num_frames, axis=0), plan.augment, cfg)
    got = decode_clip(plan, cfg)
    assert got.shape == reference.shape == (cfg.num_frames, 3, 64, 64)
    assert torch.allclose(got, reference, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (DALI's mixed decoders)")
def test_dali_gpu_reads_mixed_h264_and_images(mixed):
    """On a GPU: NVDEC for the H.264 clips and nvJPEG for the images, in the same batches."""
    pytest.importorskip("nvidia.dali", reason="nvidia-dali is not installed")
    from train.data.loader import VideoTextLoader

    cfg = LoaderConfig(num_workers=0, batch_size=4, shuffle_buffer=0)
    gpu = VideoTextLoader(cfg, str(mixed["folder"]), train=False, seed=0, backend="dali", dali_device="mixed")
    cpu = VideoTextLoader(cfg, str(mixed["folder"]), train=False, seed=0, backend="cpu")
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255
    seen = []
    for bg, bc in zip(gpu, cpu, strict=True):
        assert bg["key"] == bc["key"]
        for j, key in enumerate(bg["key"]):
            clip = bg["video"][j].cpu()
            if key in mixed["images"]:
                assert all(torch.equal(clip[0], clip[t]) for t in range(1, cfg.num_frames))
            # nvJPEG / NVDEC against libjpeg-turbo / libavcodec: IDCT rounding, not other pixels
            assert ((clip - bc["video"][j]) * std).abs().mean() < 1.5, key
        seen += bg["key"]
    assert sorted(seen) == sorted(mixed["keys"])
