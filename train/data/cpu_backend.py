"""The CPU backend: PyAV decodes only the sampled frames inside torch DataLoader workers.

Each worker reads its own shards (see ``shards.iter_samples``), decodes, augments, tokenises
and batches, so the main process only receives finished batches. Skipped samples travel to
the main process in a private batch key, so the count survives worker processes. Workers
ignore the stop signals sent to the whole process group (:mod:`train.signals`): the main
process decides when to stop.
"""

from __future__ import annotations

import logging
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from train.data.augment import apply_augment_to_crop, apply_augment_torch
from train.data.config import LoaderConfig
from train.data.decode import CorruptVideo, decode_all_frames, decode_sampled_planar
from train.data.image import decode_image_clip, is_image_sample
from train.data.samples import SKIPPED, PlannedSample, plan_sample
from train.data.shards import Skipped, iter_samples
from train.data.text import load_tokenizer, tokenize
from train.signals import blocked_in_new_workers, ignore_stop_signals

log = logging.getLogger(__name__)


def decode_planned(plan: PlannedSample, cfg: LoaderConfig, decoder: str = "seek") -> torch.Tensor:
    """float32 ``[T, 3, S, S]`` for one planned sample.

    ``decoder="all"`` decodes and converts every frame, then picks and crops (the naive
    baseline of the bench); ``"seek"`` decodes only the sampled frames and converts only the
    crop box.
    """
    aug = plan.augment
    if decoder == "all":
        frames = decode_all_frames(plan.video)
        if int(plan.indices.max()) >= len(frames):
            raise CorruptVideo(f"only {len(frames)} frames, frame {int(plan.indices.max())} needed")
        frames = frames[plan.indices]
        if aug.top + aug.height > frames.shape[1] or aug.left + aug.width > frames.shape[2]:
            raise CorruptVideo(f"frames are {frames.shape[2]}x{frames.shape[1]}, metadata promised more")
        return apply_augment_torch(frames, aug, cfg)
    keyint = plan.meta.get("video", {}).get("keyint")
    box = (aug.top, aug.left, aug.height, aug.width)
    crop = decode_sampled_planar(plan.video, plan.indices, keyint=keyint, box=box)
    return apply_augment_to_crop(crop, aug, cfg)


def decode_clip(plan: PlannedSample, cfg: LoaderConfig, decoder: str = "seek") -> torch.Tensor:
    """:func:`decode_planned` for a video; a still image (train/data/image.py) becomes its one
    frame repeated T times, with the same crop, colour and normalisation."""
    if is_image_sample(plan.meta, plan.video):
        frames = decode_image_clip(plan.video, plan.indices)
        aug = plan.augment
        if aug.top + aug.height > frames.shape[1] or aug.left + aug.width > frames.shape[2]:
            raise CorruptVideo(f"image is {frames.shape[2]}x{frames.shape[1]}, metadata promised more")
        # One crop / colour draw per clip, so every frame comes out the same: compute it once.
        return apply_augment_torch(frames[:1], aug, cfg).expand(len(frames), -1, -1, -1)
    return decode_planned(plan, cfg, decoder)


def collate(samples: list[tuple[PlannedSample, torch.Tensor]], tokenizer, max_len: int, skipped: list) -> dict:
    texts = [p.text for p, _ in samples]
    input_ids, attention_mask = tokenize(tokenizer, texts, max_len)
    return {
        "video": torch.stack([v for _, v in samples]),
        "frame_indices": torch.stack([torch.from_numpy(p.indices) for p, _ in samples]),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "text": texts,
        "key": [p.key for p, _ in samples],
        "meta": [p.meta for p, _ in samples],
        SKIPPED: skipped,
    }


class ClipDataset(IterableDataset):
    """Yields finished batches (dicts); set ``epoch`` before each pass."""

    def __init__(self, cfg: LoaderConfig, urls: list[str], *, train: bool, text: str, seed: int,
                 rank: int, world_size: int, max_batches: int | None, tokenizer_path=None,
                 decoder: str = "seek", view: str = "centre"):
        self.cfg, self.urls, self.train, self.text, self.seed = cfg, urls, train, text, seed
        self.view = view
        self.rank, self.world_size, self.max_batches = rank, world_size, max_batches
        self.tokenizer_path = tokenizer_path
        self.decoder = decoder
        self.epoch = 0

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:
            torch.set_num_threads(1)  # workers are the parallelism; intra-op threads only contend
        tokenizer = load_tokenizer(self.tokenizer_path)
        cfg = self.cfg
        stream = iter_samples(
            self.urls, rank=self.rank, world_size=self.world_size, worker=worker, num_workers=num_workers,
            seed=self.seed, epoch=self.epoch, train=self.train, resampled=cfg.resampled,
            shuffle_buffer=cfg.shuffle_buffer,
        )
        # Each worker's share of the epoch; the main process stops at max_batches in total.
        quota = None if self.max_batches is None else -(-self.max_batches // num_workers)
        batch, skipped, emitted = [], [], 0
        for item in stream:
            if quota is not None and emitted >= quota:
                break
            if isinstance(item, Skipped):
                skipped.append((item.key, item.reason))
                continue
            try:
                plan = plan_sample(item, cfg, train=self.train, text=self.text, seed=self.seed, epoch=self.epoch,
                                   view=self.view)
                video = decode_clip(plan, cfg, self.decoder)
            except (CorruptVideo, ValueError, KeyError, TypeError) as err:
                skipped.append((item.key, f"{type(err).__name__}: {err}"[:300]))
                continue
            batch.append((plan, video))
            if len(batch) == cfg.batch_size:
                yield collate(batch, tokenizer, cfg.max_len, skipped)
                batch, skipped, emitted = [], [], emitted + 1
        if batch and (quota is None or emitted < quota):
            yield collate(batch, tokenizer, cfg.max_len, skipped)
        elif skipped:
            yield {SKIPPED: skipped}  # nothing left to batch, but the skips must be counted


def iter_cpu_batches(dataset: ClipDataset, cfg: LoaderConfig) -> Iterator[dict]:
    """One pass over ``dataset`` through ``cfg.num_workers`` DataLoader workers."""
    if cfg.num_workers == 0:
        return iter(DataLoader(dataset, batch_size=None))
    loader = DataLoader(dataset, batch_size=None, num_workers=cfg.num_workers,
                        prefetch_factor=cfg.prefetch, worker_init_fn=ignore_stop_signals)
    with blocked_in_new_workers():  # the workers start here, inheriting the block
        return iter(loader)
