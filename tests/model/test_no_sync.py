"""The training forward + backward never reads a value back from the device (no host-device
synchronisation on a GPU): token counts come from the config and the shapes, stats stay tensors.

CPU proxy: the model and batch on the ``meta`` device, which has shapes but no data, so any
``int(tensor)``, ``.item()``, ``bool(tensor)`` or boolean-mask index in the step raises. With a
GPU, the same step also runs under ``torch.cuda.set_sync_debug_mode("error")``.

MLM is left out: ``mlm_loss`` gathers the masked positions with a boolean index, whose size is
data (one sync per step; see docs/parts/model.md).
"""

from __future__ import annotations

import pytest
import torch

from train.model import SMAUG
from train.model.smaug import trim_batch

NO_MLM = {"objectives": {"mlm": 0.0}}
VARIANTS = {
    "smaug": {},
    "two-layers-warmup": {"sparsify": {"layers": [0, 1], "warmup_steps": 10}},
    "tube-tubelet2": {"masking": {"video_mode": "tube"}, "video": {"tubelet": 2}},
}


def _on(device: str, batch: dict) -> dict:
    batch = trim_batch(batch)  # on the host, as pre-training does
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _step(model: SMAUG, batch: dict) -> dict:
    model.train()
    model.set_train_step(5)  # mid warm-up where there is one
    out = model(batch)
    out.loss.backward()
    return out.stats


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_training_step_reads_no_device_value(config, batch_for, variant):
    cfg = config(**NO_MLM, **VARIANTS[variant])
    torch.manual_seed(0)
    model = SMAUG(cfg).to("meta")
    stats = _step(model, _on("meta", batch_for(cfg)))
    # the token counts are plain numbers, known without the data
    assert stats["video_tokens_final"] > 0 and isinstance(stats["video_tokens_final"], float)
    assert torch.is_tensor(stats["temperature"]) and stats["temperature"].device.type == "meta"


def test_meta_proxy_catches_a_device_read(config, batch_for, monkeypatch):
    # the proxy is not vacuous: a count read from the data in the forward fails it
    def reads_the_count(mask, m):
        return mask.argsort(dim=1, descending=True)[:, :int(mask[0].sum())]

    monkeypatch.setattr("train.model.smaug.masked_positions", reads_the_count)
    cfg = config(**NO_MLM)
    model = SMAUG(cfg).to("meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        _step(model, _on("meta", batch_for(cfg)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_step_does_not_synchronise(config, batch_for):
    cfg = config(**NO_MLM, sparsify={"layers": [0, 1], "warmup_steps": 10})
    torch.manual_seed(0)
    model = SMAUG(cfg).cuda()
    batch = _on("cuda", batch_for(cfg))
    _step(model, batch)   # first call: allocator, cuBLAS handles
    torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        _step(model, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
