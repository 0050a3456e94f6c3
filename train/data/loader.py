"""``build_loader``: one entry point for both backends, and the bookkeeping they share.

The loader is re-iterable: each ``for batch in loader`` is one epoch. Call
``loader.set_epoch(e)`` before it (as with DistributedSampler) to choose the epoch; without
it the epoch advances by one per pass. After (or during) a pass, ``loader.stats`` holds
``skipped`` (count this epoch), ``skipped_keys`` ((key, reason) pairs), ``batches``,
``samples``, ``wait_s`` (time the consumer spent waiting for batches) and ``backend``.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

from train.data.augment import TEST_VIEWS
from train.data.config import LoaderConfig
from train.data.samples import SKIPPED
from train.data.shards import SHARD_UNAVAILABLE, ShardUnavailable, expand_shards

log = logging.getLogger("train.data")


def dali_available() -> tuple[bool, str]:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        return False, f"nvidia.dali is not importable ({err})"
    return True, "nvidia.dali imports"


def gpu_available() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible to torch"
    return True, f"CUDA GPU {torch.cuda.get_device_name(0)}"


def choose_backend(requested: str) -> tuple[str, str]:
    """(backend, why). ``auto`` takes DALI only with both a GPU and DALI installed."""
    if requested == "cpu":
        return "cpu", "backend: cpu requested"
    has_dali, dali_why = dali_available()
    has_gpu, gpu_why = gpu_available()
    if requested == "dali":
        if not has_dali:
            raise RuntimeError(
                f"loader.backend is 'dali' but {dali_why}; install nvidia-dali-cuda120 "
                "(pip install nvidia-dali-cuda120) or set loader.backend to cpu or auto"
            )
        if not has_gpu:
            raise RuntimeError(f"loader.backend is 'dali' but {gpu_why}; DALI decodes H.264 only on the GPU")
        return "dali", f"backend: dali requested ({gpu_why})"
    if requested != "auto":
        raise ValueError(f"unknown backend {requested!r}; use auto, dali or cpu")
    if has_dali and has_gpu:
        return "dali", f"auto: {gpu_why} and {dali_why}"
    return "cpu", "auto: " + "; ".join(why for ok, why in ((has_gpu, gpu_why), (has_dali, dali_why)) if not ok)


class VideoTextLoader:
    """Iterable of batch dicts (keys in design.md); see the module docstring."""

    def __init__(self, cfg: LoaderConfig, shards, *, train: bool, text: str = "caption", seed: int,
                 rank: int = 0, world_size: int = 1, epoch_length: int | None = None,
                 backend: str | None = None, tokenizer_path=None, dali_device: str = "mixed",
                 cpu_decoder: str = "seek", view: str = "centre"):
        if text not in ("caption", "question"):
            raise ValueError(f"text must be 'caption' or 'question', got {text!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} / world_size {world_size} is not a valid pair")
        if view not in TEST_VIEWS:
            raise ValueError(f"unknown test view {view!r} (one of {', '.join(TEST_VIEWS)})")
        self.cfg, self.view = cfg, view
        self.urls = expand_shards(shards)
        self.train, self.text, self.seed = train, text, seed
        self.rank, self.world_size = rank, world_size
        self.epoch_length = epoch_length if epoch_length is not None else cfg.epoch_length
        if cfg.resampled and self.epoch_length is None:
            raise ValueError("resampled shards never run out: give epoch_length (batches per rank per epoch)")
        if backend is None:
            backend, why = choose_backend(cfg.backend)
        else:
            why = f"backend {backend} forced by caller"
        self.backend, self.backend_reason = backend, why
        log.info("loader backend: %s (%s)", backend, why)
        self.tokenizer_path = tokenizer_path
        self.dali_device = dali_device
        self.cpu_decoder = cpu_decoder  # "all" only for the bench's naive baseline
        self.epoch = 0
        self._epoch_set = False
        self.stats: dict = {"backend": backend, "backend_reason": why, "skipped_total": 0}
        self._reset_stats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._epoch_set = int(epoch), True

    def __len__(self) -> int:
        if self.epoch_length is None:
            raise TypeError("loader length is only known when epoch_length is set")
        return self.epoch_length

    def _reset_stats(self) -> None:
        self.stats.update(skipped=0, skipped_keys=[], batches=0, samples=0, wait_s=0.0, epoch=self.epoch)

    def _batches(self) -> Iterator[dict]:
        kwargs = dict(train=self.train, text=self.text, seed=self.seed, rank=self.rank,
                      world_size=self.world_size, max_batches=self.epoch_length,
                      tokenizer_path=self.tokenizer_path, view=self.view)
        if self.backend == "cpu":
            from train.data.cpu_backend import ClipDataset, iter_cpu_batches

            dataset = ClipDataset(self.cfg, self.urls, decoder=self.cpu_decoder, **kwargs)
            dataset.epoch = self.epoch
            return iter_cpu_batches(dataset, self.cfg)
        if self.backend == "dali":
            from train.data.dali_backend import dali_batches

            return dali_batches(self.cfg, self.urls, epoch=self.epoch, device=self.dali_device, **kwargs)
        raise ValueError(f"unknown backend {self.backend!r}")

    def __iter__(self) -> Iterator[dict]:
        if not self._epoch_set and self.stats["batches"] > 0:
            self.epoch += 1  # no set_epoch: advance by one per pass
        self._epoch_set = False
        self._reset_stats()
        source = self._batches()
        while self.epoch_length is None or self.stats["batches"] < self.epoch_length:
            start = time.perf_counter()
            try:
                batch = next(source)
            except StopIteration:
                break
            finally:
                self.stats["wait_s"] += time.perf_counter() - start
            self._count_skips(batch.pop(SKIPPED, []))
            if "video" not in batch:
                continue  # a worker's trailing skip report, no samples
            self.stats["batches"] += 1
            self.stats["samples"] += len(batch["key"])
            yield batch
        if self.stats["skipped"]:
            log.warning("epoch %d: skipped %d broken samples", self.epoch, self.stats["skipped"])

    def _count_skips(self, skipped) -> None:
        for key, reason in skipped:
            if str(reason).startswith(SHARD_UNAVAILABLE):
                raise ShardUnavailable(
                    f"{key}: {reason}; a shard that cannot be read stops the run instead of training "
                    "or evaluating on fewer shards: restore it and rerun the same command")
            log.warning("skipping sample %s: %s", key, reason)
            self.stats["skipped"] += 1
            self.stats["skipped_total"] += 1
            self.stats["skipped_keys"].append((key, reason))


def build_loader(cfg: LoaderConfig, shards, *, train: bool, text: str = "caption", seed: int,
                 rank: int = 0, world_size: int = 1, epoch_length: int | None = None,
                 tokenizer_path=None, view: str = "centre") -> VideoTextLoader:
    """Batches of sparse-sampled, augmented clips with their tokenised text (design.md).

    ``tokenizer_path``: the text tower's folder (``model.text.path``; None: the offline
    default). Its vocabulary must be the model's: ids of another vocabulary would feed the
    text tower the wrong words without any error. ``view``: the evaluation crop,
    ``centre`` or ``whole`` (``augment.TEST_VIEWS``); ignored in training."""
    return VideoTextLoader(cfg, shards, train=train, text=text, seed=seed, rank=rank, world_size=world_size,
                           epoch_length=epoch_length, tokenizer_path=tokenizer_path, view=view)
