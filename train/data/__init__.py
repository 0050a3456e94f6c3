"""Shards -> sparse-sampled frame batches with tokenised text (DALI on the GPU, PyAV on the CPU).

Entry point: :func:`build_loader`. Modules, in the order data flows through them:
``shards`` (WebDataset reading, splitting, shuffling), ``sampling`` (which frames),
``text`` (which caption, tokenisation), ``augment`` (crop and colour), ``samples`` (all
per-sample decisions in one place), ``decode`` + ``cpu_backend`` / ``dali_backend``
(decoding), ``loader`` (the factory and its bookkeeping), ``bench`` (throughput).
"""

from train.data.config import LoaderConfig

__all__ = ["LoaderConfig", "VideoTextLoader", "build_loader", "choose_backend"]


def __getattr__(name: str):
    # The loader (and webdataset / PyAV under it) is imported on first use, so what needs only
    # the settings (the model, train.gpu_check on a bare GPU box) does not need those packages.
    if name in ("VideoTextLoader", "build_loader", "choose_backend"):
        from train.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'train.data' has no attribute {name!r}")
