"""Cost accounting: FLOPs per step, throughput, memory, and the paper-scale GPU-hour projection.

``results/metrics/pretrain-<recipe>.json`` (one file per recipe, so each DVC stage of the
``foreach`` owns its own metrics file) holds what one pre-training run cost here, and what the
same recipe would cost at paper scale: FLOPs per clip of the paper-scale model (``cost.preset``,
ViT-B/16 at 224 px) counted by ``torch.utils.flop_counter.FlopCounterMode`` over one
forward+backward, times the clips seen (``cost.clips * cost.epochs``), divided by an assumed
sustained GPU throughput (``cost.gpu_peak_tflops * cost.mfu``). The assumptions are written
into the JSON beside the figure.

Attention is counted. ``FlopCounterMode`` knows the CUDA attention kernels (flash, efficient,
cuDNN) but not the CPU one that ``scaled_dot_product_attention`` dispatches to
(``_scaled_dot_product_flash_attention_for_cpu``), so on the CPU it recorded 0 FLOPs for every
attention map, in our layers and inside transformers' BERT alike. :data:`ATTENTION_FLOPS` gives
the counter the same analytic formulas for the CPU kernels (QK^T and AV, forward and backward),
and :func:`attention_counted` checks on a probe that the counter does count attention on a device.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from train.config import CostConfig


aten = torch.ops.aten


def _sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                         out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# The CPU attention kernels, with the formulas torch already uses for the CUDA ones.
ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
}


def flop_counter_mode() -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts attention on the CPU."""
    return FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS)


def attention_flops(batch: int, heads: int, queries: int, keys: int, head_dim: int,
                    *, backward: bool = True) -> int:
    """Analytic FLOPs of one attention, 2 FLOPs per multiply-add, as torch counts the CUDA
    kernels: the forward is two matmuls (QK^T, AV: 4*B*H*Nq*Nk*d); the backward five (the
    scores recomputed, as flash kernels do, then the gradients of the attention map, V, Q, K)."""
    unit = 2 * batch * heads * queries * keys * head_dim
    return unit * (7 if backward else 2)


def attention_counted(device: str | torch.device = "cpu") -> bool:
    """Whether :func:`flop_counter_mode` counts a probe ``scaled_dot_product_attention`` on
    ``device`` (forward and backward) at its analytic cost."""
    q = torch.randn(1, 2, 8, 4, device=device, requires_grad=True)
    k, v = torch.randn(1, 2, 8, 4, device=device), torch.randn(1, 2, 8, 4, device=device)
    counter = flop_counter_mode()
    with counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
    return counter.get_total_flops() >= attention_flops(1, 2, 8, 8, 4)


def count_step_flops(model: nn.Module, batch: dict[str, Any],
                     loss_fn: Callable[[nn.Module, dict], Any],
                     *, autocast_dtype: torch.dtype | None = None) -> tuple[int, Any]:
    """FLOPs of one forward+backward of ``loss_fn(model, batch)``; gradients are cleared after.

    Returns ``(flops, output)`` so callers can also read the output's ``stats``.
    """
    from train.trainer import split_output

    device = next(model.parameters()).device
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())
    was_training = model.training
    model.train()
    counter = flop_counter_mode()
    with counter:
        with ctx:
            out = loss_fn(model, batch)
        loss, _, _ = split_output(out)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return int(counter.get_total_flops()), out


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: GPU allocations on CUDA, resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def synthetic_batch(batch_size: int, frames: int, image_size: int, text_len: int,
                    vocab_size: int = 30522, device: str | torch.device = "cpu",
                    seed: int = 0) -> dict[str, Any]:
    """A batch with the loader's keys and shapes, for counting FLOPs of a model size we do not
    train here (the count depends on shapes, not on pixel values)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (batch_size, text_len), generator=g)
    ids[:, 0] = 101  # [CLS]
    ids[:, -1] = 102  # [SEP]
    return {
        "video": torch.randn(batch_size, frames, 3, image_size, image_size, generator=g).to(device),
        "frame_indices": torch.arange(frames).repeat(batch_size, 1).to(device),
        "input_ids": ids.to(device),
        "attention_mask": torch.ones(batch_size, text_len, dtype=torch.long, device=device),
        "text": ["synthetic"] * batch_size,
        "key": [f"synthetic_{i}" for i in range(batch_size)],
        "meta": [{} for _ in range(batch_size)],
    }


def preset_flops_per_clip(model_cfg: Any, frames: int, image_size: int, text_len: int,
                          *, batch_size: int = 2, device: str | torch.device = "cpu") -> int:
    """FLOPs per clip of one training step of a (paper-scale) model config.

    The model is built on ``device`` with random weights and run on a small synthetic batch
    (the FLOP count does not depend on the values); ``batch_size`` 2 gives the in-batch
    objectives (VTC, VTM negatives) their cross-sample work.
    """
    from train.model import SMAUG

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = SMAUG(model_cfg).to(device)
        batch = synthetic_batch(batch_size, frames, image_size, text_len, device=device)
        from train.trainer import default_loss

        flops, _ = count_step_flops(model, batch, default_loss)
    finally:
        torch.random.set_rng_state(state)
    return flops // batch_size


def project_gpu_hours(flops_per_clip: float, cost: CostConfig) -> dict[str, Any]:
    """Paper-scale GPU-hours from FLOPs per clip and the stated throughput assumptions."""
    total = flops_per_clip * cost.clips * cost.epochs
    sustained = cost.gpu_peak_tflops * 1e12 * cost.mfu
    return {
        "gpu_hours": total / sustained / 3600.0,
        "total_flops": total,
        "flops_per_clip": flops_per_clip,
        "assumptions": {
            "preset": cost.preset,
            "clips": cost.clips,
            "epochs": cost.epochs,
            "gpu": cost.gpu,
            "gpu_peak_tflops": cost.gpu_peak_tflops,
            "mfu": cost.mfu,
            "sustained_tflops": sustained / 1e12,
        },
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
