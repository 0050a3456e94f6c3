"""The DALI backend: encoded bytes from the shards decoded on the GPU, only the sampled frames.

Python reads shards, plans each sample (frames, crop, colour, caption: ``samples.plan_sample``,
shared with the CPU backend) and hands the raw bytes plus the plan to DALI through
``fn.external_source``; ``fn.decoders.video(frames=...)`` decodes just those frames
(``device="mixed"``: NVDEC), then resize-with-crop, colour and normalisation run on the GPU.
The text side waits in a FIFO next to the pipeline and joins each batch as it comes out of
DALI's PyTorch iterator (DALI keeps external-source order).

The same pipeline runs with ``device="cpu"`` on VP9/MJPEG input (DALI's CPU decoder has no
H.264), which is how the tests check it on machines without a GPU.

Still images (``<key>.jpg``, train/data/image.py) share the batches: a per-sample flag, the
external source's last output, steers a DALI conditional (``enable_conditionals``) to
``fn.decoders.image`` (nvJPEG with ``mixed``, libjpeg-turbo on CPU), whose one frame is stacked
T times into a clip; the crop, colour and normalisation after the merge are the video's.
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import torch

from train.data.config import LoaderConfig
from train.data.decode import CorruptVideo, check_stream
from train.data.image import check_image, is_image_sample
from train.data.samples import SKIPPED, plan_sample
from train.data.shards import Skipped, iter_samples
from train.data.text import load_tokenizer, tokenize

log = logging.getLogger(__name__)


class PlannedBatches:
    """DALI's external source: each call returns one batch of inputs, planned in Python."""

    def __init__(self, cfg: LoaderConfig, stream, *, train: bool, text: str, seed: int, epoch: int,
                 view: str = "centre"):
        self.num_planned = 8 if train else 4  # evaluation has no colour factors
        self.num_outputs = self.num_planned + 1  # + the is-image flag, always last
        self.cfg, self.stream, self.train, self.text, self.seed, self.epoch = cfg, stream, train, text, seed, epoch
        self.view = view
        self.pending: collections.deque = collections.deque()  # (plans, skipped) per batch, FIFO
        self.trailing_skips: list = []
        self.done = False

    def __call__(self):
        if self.done:
            raise StopIteration
        plans, skipped = [], []
        for item in self.stream:
            if isinstance(item, Skipped):
                skipped.append((item.key, item.reason))
                continue
            try:
                plan = plan_sample(item, self.cfg, train=self.train, text=self.text, seed=self.seed, epoch=self.epoch,
                                   view=self.view)
                info = item.meta["video"]
                if is_image_sample(item.meta, item.video):
                    check_image(item.video, plan.indices, int(info["width"]), int(info["height"]))
                else:
                    check_stream(item.video, int(plan.indices.max()), int(info["width"]), int(info["height"]))
            except (CorruptVideo, ValueError, KeyError, TypeError) as err:
                skipped.append((item.key, f"{type(err).__name__}: {err}"[:300]))
                continue
            plans.append(plan)
            if len(plans) == self.cfg.batch_size:
                break
        if not plans:
            self.done = True
            self.trailing_skips.extend(skipped)
            raise StopIteration
        self.pending.append((plans, skipped))
        f32 = lambda xs: [np.asarray(x, dtype=np.float32) for x in xs]  # noqa: E731
        augs = [p.augment for p in plans]
        return (
            [np.frombuffer(p.video, dtype=np.uint8) for p in plans],
            [p.indices.astype(np.int32) for p in plans],
            f32([(a.top, a.left) for a in augs]),
            f32([(a.top + a.height, a.left + a.width) for a in augs]),
            f32([a.hue for a in augs]),
            f32([a.saturation for a in augs]),
            f32([a.brightness for a in augs]),
            f32([a.contrast for a in augs]),
        )[: self.num_planned] + ([np.array(is_image_sample(p.meta, p.video)) for p in plans],)


def build_pipeline(cfg: LoaderConfig, source: PlannedBatches, *, device: str, train: bool, device_id, num_threads: int = 2):
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=cfg.batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=cfg.prefetch, exec_dynamic=True, enable_conditionals=True)
    def video_pipeline():
        inputs = fn.external_source(
            source=source, num_outputs=source.num_outputs, batch=True,
            dtype=([types.UINT8, types.INT32] + [types.FLOAT] * 6)[: source.num_planned] + [types.BOOL],
            ndim=[1, 1, 1, 1, 0, 0, 0, 0][: source.num_planned] + [0],
        )
        encoded, indices, roi_start, roi_end = inputs[:4]
        if inputs[-1]:  # a still image: its one frame, T times (train/data/image.py says why)
            frame = fn.decoders.image(encoded, device=device, output_type=types.RGB)
            frames = fn.stack(*([frame] * cfg.frames_per_clip), axis_name="F")
        else:
            frames = fn.decoders.video(encoded, device=device, frames=indices)  # [T, H, W, 3] uint8
        # Crop box and resize in one op; the box is the same for every frame of the clip.
        frames = fn.resize(frames, size=[cfg.image_size, cfg.image_size], roi_start=roi_start, roi_end=roi_end,
                           interp_type=types.INTERP_LINEAR, antialias=True)
        if train:  # evaluation draws identity colour factors; skip the work
            hue, saturation, brightness, contrast = inputs[4:8]
            frames = fn.hsv(frames, hue=hue, saturation=saturation)
            frames = fn.brightness_contrast(frames, brightness=brightness, contrast=contrast, contrast_center=128.0)
        # No mirror, ever: captions say left/right (see augment.py).
        return fn.crop_mirror_normalize(
            frames, dtype=types.FLOAT, output_layout="FCHW", mirror=0,
            mean=[m * 255.0 for m in cfg.mean], std=[s * 255.0 for s in cfg.std],
        )

    return video_pipeline()


def dali_batches(cfg: LoaderConfig, urls, *, epoch: int, device: str, train: bool, text: str, seed: int,
                 rank: int, world_size: int, max_batches, tokenizer_path=None, view: str = "centre"):
    """Batch dicts (design.md keys plus the private skip report) from one DALI pipeline per rank."""
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    tokenizer = load_tokenizer(tokenizer_path)
    stream = iter_samples(urls, rank=rank, world_size=world_size, worker=0, num_workers=1, seed=seed,
                          epoch=epoch, train=train, resampled=cfg.resampled, shuffle_buffer=cfg.shuffle_buffer)
    source = PlannedBatches(cfg, stream, train=train, text=text, seed=seed, epoch=epoch, view=view)
    device_id = (torch.cuda.current_device() if torch.cuda.is_available() else 0) if device != "cpu" else None
    pipe = build_pipeline(cfg, source, device=device, train=train, device_id=device_id)
    pipe.build()
    outputs = DALIGenericIterator([pipe], ["video"], last_batch_policy=LastBatchPolicy.PARTIAL,
                                  auto_reset=False, prepare_first_batch=False)
    for out in outputs:
        plans, skipped = source.pending.popleft()
        texts = [p.text for p in plans]
        input_ids, attention_mask = tokenize(tokenizer, texts, cfg.max_len)
        yield {
            "video": out[0]["video"],
            "frame_indices": torch.from_numpy(np.stack([p.indices for p in plans])),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "text": texts,
            "key": [p.key for p in plans],
            "meta": [p.meta for p in plans],
            SKIPPED: skipped,
        }
    if source.trailing_skips:
        yield {SKIPPED: source.trailing_skips}
