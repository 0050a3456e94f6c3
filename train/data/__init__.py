"""Shards -> sparse-sampled frame batches with tokenised text (DALI on the GPU, PyAV on the CPU).

Entry point: :func:`build_loader`. Modules, in the order data flows through them:
``shards`` (WebDataset reading, splitting, shuffling), ``sampling`` (which frames),
``text`` (which caption, tokenisation), ``augment`` (crop and colour), ``samples`` (all
per-sample decisions in one place), ``decode`` + ``cpu_backend`` / ``dali_backend``
(decoding), ``loader`` (the factory and its bookkeeping), ``bench`` (throughput).
"""

from train.data.config import LoaderConfig
from train.data.loader import VideoTextLoader, build_loader, choose_backend

__all__ = ["LoaderConfig", "VideoTextLoader", "build_loader", "choose_backend"]
