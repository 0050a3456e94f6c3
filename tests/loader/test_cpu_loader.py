"""The CPU backend on real H.264 shards: decode exactness, batches, skipping, splitting, backend choice."""

import collections
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.data import LoaderConfig, build_loader, choose_backend
from train.data.decode import CorruptVideo, decode_all_frames, decode_sampled_frames
from train.data.loader import VideoTextLoader

EVAL = dict(num_workers=0, shuffle_buffer=0, batch_size=4)


def to_pixels(video: torch.Tensor, cfg: LoaderConfig) -> torch.Tensor:
    """Undo normalisation: [.., 3, H, W] -> float pixel values in [0, 255]."""
    mean = torch.tensor(cfg.mean).view(3, 1, 1) * 255
    std = torch.tensor(cfg.std).view(3, 1, 1) * 255
    return video * std + mean


def test_seek_decode_is_pixel_exact(clip_cache):
    data = clip_cache[("h264", 2)]  # 48 frames, keyframe every 12
    full = decode_all_frames(data)
    assert full.shape == (48, 96, 128, 3)
    rng = np.random.default_rng(0)
    # gaps over two keyframe intervals are reached by container seeks ([47], [36] a keyframe,
    # 13 -> 40, 0 -> 36 -> 47 no), shorter ones by demuxing through
    for indices in ([0], [47], [36], [3, 3, 11, 12, 13, 40], [0, 36, 47], [35, 0, 36],
                    rng.integers(0, 48, 8).tolist(), [30, 2, 25]):
        got = decode_sampled_frames(data, indices, keyint=12)
        assert np.array_equal(got, full[indices])
    # no keyint known: same frames (seeks past 32 frames)
    assert np.array_equal(decode_sampled_frames(data, [5, 40]), full[[5, 40]])
    assert np.array_equal(decode_sampled_frames(data, [47, 0]), full[[47, 0]])


def test_truncated_or_short_clip_is_an_error(clip_cache):
    data = clip_cache[("h264", 2)]
    with pytest.raises(CorruptVideo):
        decode_sampled_frames(data[: len(data) // 3], [0, 40])
    with pytest.raises(CorruptVideo, match="not found"):
        decode_sampled_frames(data, [60])


def test_eval_batches_match_full_decode(h264_shards):
    # 128x96 clips, image_size 96: eval = centre 96x96 crop, no resize, so exact pixels.
    cfg = LoaderConfig(**EVAL, image_size=96)  # the clips' height: a crop, no resize
    loader = build_loader(cfg, str(h264_shards.folder), train=False, seed=0)
    seen = 0
    for batch in loader:
        assert set(batch) == {"video", "frame_indices", "input_ids", "attention_mask", "text", "key", "meta"}
        b = len(batch["key"])
        assert batch["video"].shape == (b, cfg.num_frames, 3, 96, 96) and batch["video"].dtype == torch.float32
        assert batch["frame_indices"].dtype == torch.long and batch["frame_indices"].shape == (b, cfg.num_frames)
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (b, 32)
        assert batch["input_ids"].dtype == torch.long and batch["input_ids"][:, 0].eq(101).all()  # [CLS]
        for j, key in enumerate(batch["key"]):
            assert batch["meta"][j]["key"] == key
            assert batch["text"][j] == h264_shards.metas[key]["captions"][0]  # eval: first caption
            full = decode_all_frames(h264_shards.videos[key])
            idx = batch["frame_indices"][j].numpy()
            want = torch.from_numpy(full[idx][:, :, 16:112]).permute(0, 3, 1, 2).float()
            got = to_pixels(batch["video"][j], cfg)
            assert (got - want).abs().max() < 1e-3  # pixel for pixel
        seen += b
    assert seen == 16 and loader.stats["skipped"] == 0


def test_eval_whole_view_sees_the_whole_frame(h264_shards):
    """view="whole": each 128x96 frame is resized whole to 96x96 (the centre view cuts 16 px off
    each side); the objects at the edges are in the batch. An unknown view is refused."""
    cfg = LoaderConfig(**EVAL, image_size=96)
    whole = next(iter(build_loader(cfg, str(h264_shards.folder), train=False, seed=0, view="whole")))
    centre = next(iter(build_loader(cfg, str(h264_shards.folder), train=False, seed=0)))
    assert whole["key"] == centre["key"] and torch.equal(whole["frame_indices"], centre["frame_indices"])
    for j, key in enumerate(whole["key"]):
        full = decode_all_frames(h264_shards.videos[key])[whole["frame_indices"][j].numpy()]
        frames = torch.from_numpy(full).permute(0, 3, 1, 2).float()
        # an independent path: plain bilinear resize of the whole frame, no antialiasing
        ref = F.interpolate(frames, size=(96, 96), mode="bilinear", align_corners=False)
        got = to_pixels(whole["video"][j], cfg)
        assert (got - ref).abs().mean() < 6, key
        cut = frames[:, :, :, 16:112]
        assert (to_pixels(centre["video"][j], cfg) - cut).abs().max() < 1e-3
        assert (got - cut).abs().mean() > 6, key  # not the centre square
    with pytest.raises(ValueError, match="unknown test view 'middle'"):
        build_loader(cfg, str(h264_shards.folder), train=False, seed=0, view="middle")


def test_train_resize_matches_reference_within_tolerance(h264_shards):
    cfg = LoaderConfig(num_workers=0, shuffle_buffer=0, batch_size=4, image_size=64,
                       brightness=0.0, contrast=0.0, saturation=0.0)
    from train.data.augment import draw_augment
    from train.data.sampling import STREAM_AUGMENT, sample_rng

    batch = next(iter(build_loader(cfg, str(h264_shards.folder), train=True, seed=3)))
    for j, key in enumerate(batch["key"]):
        aug = draw_augment(cfg, 96, 128, train=True, rng=sample_rng(3, 0, key, STREAM_AUGMENT))
        assert aug.height * aug.width < 96 * 128 or aug.height == 96  # a real crop box
        full = decode_all_frames(h264_shards.videos[key])[batch["frame_indices"][j].numpy()]
        crop = full[:, aug.top: aug.top + aug.height, aug.left: aug.left + aug.width]
        # reference: plain bilinear resize without antialiasing, an independent path
        ref = F.interpolate(torch.from_numpy(crop).permute(0, 3, 1, 2).float(), size=(64, 64),
                            mode="bilinear", align_corners=False)
        diff = (to_pixels(batch["video"][j], cfg) - ref).abs()
        # stated tolerance after resize: mean < 6 grey levels (antialias vs none on sharp test patterns)
        assert diff.mean() < 6, diff.mean()


def test_same_seed_same_batches_other_epoch_differs(h264_shards):
    cfg = LoaderConfig(num_workers=2, batch_size=4, shuffle_buffer=8)
    first = build_loader(cfg, str(h264_shards.folder), train=True, seed=7)
    second = build_loader(cfg, str(h264_shards.folder), train=True, seed=7)
    by_key = lambda ld: {k: (fi.tolist(), t) for b in ld for k, fi, t in zip(b["key"], b["frame_indices"], b["text"])}  # noqa: E731
    a, b = by_key(first), by_key(second)
    assert a == b and len(a) == 16
    second.set_epoch(1)
    c = by_key(second)
    assert set(c) == set(a) and any(c[k] != a[k] for k in a)
    # captions: one per video per epoch, drawn from that video's captions
    for k, (_, text) in c.items():
        assert text in h264_shards.metas[k]["captions"]


def test_corrupt_samples_are_skipped_counted_and_named(broken_shards, caplog):
    cfg = LoaderConfig(num_workers=2, batch_size=3, shuffle_buffer=4)
    loader = build_loader(cfg, str(broken_shards.folder), train=True, seed=0)
    with caplog.at_level("WARNING", logger="train.data"):
        keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(broken_shards.keys)  # every good sample, once
    assert loader.stats["skipped"] == 2
    skipped = dict(loader.stats["skipped_keys"])
    assert set(skipped) == {"clip_bad_trunc", "clip_bad_json"}
    assert "json" in skipped["clip_bad_json"]
    assert "clip_bad_trunc" in caplog.text and "clip_bad_json" in caplog.text


@pytest.mark.parametrize("shards_kind", ["per_shard", "per_sample"])
def test_every_sample_once_per_epoch_across_ranks_and_workers(h264_shards, shards_kind):
    cfg = LoaderConfig(num_workers=2, batch_size=3, shuffle_buffer=4)
    # 4 shards for 2 ranks x 2 workers = 4 slots; with 2 shards the split falls back to samples
    shards = [str(p) for p in h264_shards.paths] if shards_kind == "per_shard" else [str(p) for p in h264_shards.paths[:2]]
    expected = h264_shards.keys if shards_kind == "per_shard" else h264_shards.keys[:8]
    counts = collections.Counter()
    per_rank = []
    for rank in range(2):
        loader = build_loader(cfg, shards, train=True, seed=1, rank=rank, world_size=2)
        keys = [k for b in loader for k in b["key"]]
        per_rank.append(len(keys))
        counts.update(keys)
    assert set(counts) == set(expected) and set(counts.values()) == {1}
    assert all(n > 0 for n in per_rank)


def test_resampled_epoch_length(h264_shards):
    cfg = LoaderConfig(num_workers=2, batch_size=2, shuffle_buffer=4, resampled=True, epoch_length=5)
    loader = build_loader(cfg, f"{h264_shards.folder}/shard-{{000000..000003}}.tar", train=True, seed=0)
    assert len(loader) == 5
    batches = list(loader)
    assert len(batches) == 5 and loader.stats["batches"] == 5
    assert all(k in h264_shards.metas for b in batches for k in b["key"])
    # the call's epoch_length overrides the config's
    assert len(list(build_loader(cfg, str(h264_shards.folder), train=True, seed=0, epoch_length=2))) == 2


def test_question_text(h264_shards):
    cfg = LoaderConfig(**EVAL)
    batch = next(iter(build_loader(cfg, str(h264_shards.folder), train=False, text="question", seed=0)))
    assert batch["text"][0] == f"what is in {batch['key'][0]}?"


def test_bad_shard_specs_are_clear_errors(tmp_path, h264_shards):
    with pytest.raises(FileNotFoundError, match="no .tar"):
        build_loader(LoaderConfig(), str(tmp_path), train=True, seed=0)
    with pytest.raises(FileNotFoundError, match="missing"):
        build_loader(LoaderConfig(), str(tmp_path / "shard-{000..003}.tar"), train=True, seed=0)
    with pytest.raises(ValueError, match="text"):
        build_loader(LoaderConfig(), str(h264_shards.folder), train=True, seed=0, text="answer")


def test_auto_backend_picks_cpu_here_and_says_why(h264_shards, caplog):
    assert not torch.cuda.is_available()  # this machine has no GPU
    with caplog.at_level("INFO", logger="train.data"):
        loader = build_loader(LoaderConfig(), str(h264_shards.folder), train=True, seed=0)
    assert loader.backend == "cpu"
    assert "no CUDA GPU" in loader.stats["backend_reason"]
    assert "loader backend: cpu" in caplog.text
    with pytest.raises(RuntimeError, match="GPU"):
        choose_backend("dali")


def test_dali_missing_is_a_clear_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # as if the package were not installed
    with pytest.raises(RuntimeError, match="pip install nvidia-dali"):
        choose_backend("dali")
    backend, why = choose_backend("auto")
    assert backend == "cpu" and "nvidia.dali is not importable" in why


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4])
def test_no_rank_or_worker_gets_nothing(h264_shards, num_shards):
    from train.data.shards import RawSample, iter_samples

    urls = [str(p) for p in h264_shards.paths[:num_shards]]
    seen = []
    for rank in range(2):
        for worker in range(2):
            keys = [s.key for s in iter_samples(urls, rank=rank, world_size=2, worker=worker, num_workers=2, seed=0,
                                                epoch=0, train=True, resampled=False, shuffle_buffer=3)
                    if isinstance(s, RawSample)]
            assert keys, (rank, worker)
            seen += keys
    assert sorted(seen) == sorted(h264_shards.keys[: 4 * num_shards])
