"""VTC under DDP carries the same weight as in one process: two gloo ranks, each with half the
batch, give (after DDP's gradient average) the gradients of one process on the whole batch.

The reference is what a DDP step should equal: VTC over the *global* batch plus the mean of the
ranks' other losses. The other objectives draw from the batch they see (VTM negatives within the
local batch, MLM/MVM masks from the generator), so the reference runs each rank's half through
the same model with the same generator seed and takes their other losses as they are; only VTC
is computed over the concatenated features. Before the fix VTC's share came out 1/world.
"""

from __future__ import annotations

import socket

import torch

from train.model import SMAUG
from train.model.objectives.vtc import vtc_loss

from tests.model.conftest import make_batch, tiny_config

WORLD = 2
BATCH = 6  # 3 clips per rank


def configs():
    # the text tower fully frozen: it then runs in eval mode (no dropout), so runs compare exactly
    frozen = {"num_layers": 2, "freeze_layers": 2, "max_len": 16}
    return {
        "vtc-only": tiny_config(text=frozen, objectives={"vtc": 1.0, "vtm": 0.0, "mlm": 0.0, "mvm": 0.0}),
        "all": tiny_config(text=frozen, objectives={"vtc": 2.0, "vtm": 1.0, "mlm": 0.5, "mvm": 1.0}),
    }


def half(batch: dict, rank: int) -> dict:
    per = BATCH // WORLD
    return {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}


def build(cfg) -> SMAUG:
    torch.manual_seed(0)          # the same initial weights in every process
    return SMAUG(cfg)


def grads(model) -> dict[str, list]:
    return {n: p.grad.tolist() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank, port, queue):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        for name, cfg in configs().items():
            model = build(cfg)
            ddp = DDP(model, find_unused_parameters=True)
            batch = half(make_batch(cfg, batch=BATCH), rank)
            out = ddp(batch, generator=torch.Generator().manual_seed(100 + rank))
            out.loss.backward()
            queue.put((name, rank, grads(model)))   # plain lists: no shared memory
    finally:
        dist.destroy_process_group()


def reference(cfg) -> dict[str, torch.Tensor]:
    """Gradients of: w_vtc * VTC(global batch) + mean over ranks of the other weighted losses."""
    model = build(cfg)
    batch = make_batch(cfg, batch=BATCH)
    others, v_feats, t_feats = [], [], []
    for rank in range(WORLD):
        part = half(batch, rank)
        out = model(part, generator=torch.Generator().manual_seed(100 + rank))
        others.append(out.loss - cfg.objectives.vtc * out.losses["vtc"])
        # the same generator seed: the video masking (drawn first) is the rank's masking
        _, v = model.encode_video(part["video"], mask=True,
                                  generator=torch.Generator().manual_seed(100 + rank))
        _, t = model.encode_text(part["input_ids"], part["attention_mask"])
        v_feats.append(v)
        t_feats.append(t)
    vtc = vtc_loss(torch.cat(v_feats), torch.cat(t_feats), model.vtc.temperature)
    (cfg.objectives.vtc * vtc + sum(others) / WORLD).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_ddp_gradients_equal_one_process_on_the_global_batch():
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in range(WORLD * len(configs()))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for name, cfg in configs().items():
        expected = reference(cfg)
        ranks = [g for n, _, g in results if n == name]
        assert len(ranks) == WORLD
        # DDP leaves the averaged gradient on every rank
        got = {k: torch.tensor(v) for k, v in ranks[0].items()}
        assert set(got) == set(expected), name
        for key, value in expected.items():
            # fp32 sums in a different order: tolerance relative to the tensor's scale (a wrong
            # world-size factor is off by 2x, far outside it)
            scale = float(value.abs().max()) + 1e-12
            assert torch.allclose(got[key], value, rtol=1e-4, atol=1e-5 * scale), (
                name, key, (got[key] - value).abs().max().item(), value.abs().max().item())
        # the temperature is in the comparison: its gradient must not be scaled by the world size
        assert "vtc.log_temperature" in expected and expected["vtc.log_temperature"].abs() > 0
