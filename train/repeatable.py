"""Training arithmetic that repeats itself: one seed, data and code give the same bits.

Why this exists: with 2 CPU threads, two runs of the default pre-training with one seed differed
in the 7th digit of their losses after 30 steps, and over 800 steps that grew into R@1 points:
five fresh clones of seed 0 gave 22.8 to 29.6, as wide as the spread between seeds, so a fresh
run could not check a committed number. One thread repeated itself, at 1.45x the time.

torch's deterministic mode swaps the kernels whose order of additions varies from run to run for
ones with a fixed order. With it, three 30-step runs on 2 threads were identical to the last bit,
and their training took no longer (17.2-17.9 s against 17.6-19.5 s without; README, "Settings").
It is the top-level ``deterministic`` setting of params.yaml, read by every training program.
"""

from __future__ import annotations

import os

import torch

# cuBLAS picks its reduction order from its workspace; torch documents this value as the one that
# makes CUDA matmuls repeatable. cuBLAS reads it when it starts, so it is set before any CUDA work.
CUBLAS_WORKSPACE = ":4096:8"


def make_repeatable(on: bool) -> None:
    """Turn torch's deterministic kernels on (or leave torch's fast default when ``on`` is false).

    ``warn_only``: an op with no repeatable kernel (some CUDA ones) warns instead of stopping a
    run; the GPU path has not been measured with this on."""
    if not on:
        torch.use_deterministic_algorithms(False)
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False  # benchmark mode picks a convolution algorithm by timing
