"""The loop: resume continues the same loss curve, non-finite losses stop with step and keys,
DDP on two gloo ranks equals one process accumulating the same global batch."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.support import free_port
from train.distributed import DistInfo, init_distributed, shutdown
from train.trainer import NonFiniteLossError, Trainer


def endless(batches, start=0):
    """Batch ``start``, ``start+1`` ... cycling: deterministic data that can start anywhere."""
    for i in itertools.count(start):
        yield batches[i % len(batches)]


def test_resume_continues_same_loss_curve(tmp_path, tiny_params, build_tiny, real_batches):
    params = tiny_params("smaug", "pretrain.steps=6", "pretrain.warmup=2")
    n = 3
    model, cfg = build_tiny(params)
    full = Trainer(model, cfg, progress=False, seed=7)
    full.fit(endless(real_batches))
    uninterrupted = [r["loss"] for r in full.history]

    model, cfg = build_tiny(params)
    first = Trainer(model, cfg, progress=False, seed=7, ckpt_dir=tmp_path / "run")
    first.fit(endless(real_batches), steps=n)
    first.save()
    torch.manual_seed(12345)  # whatever happens in between must not matter

    model, cfg = build_tiny(params)
    second = Trainer(model, cfg, progress=False, seed=7)
    assert second.resume(tmp_path / "run") == n
    second.fit(endless(real_batches, start=n))
    resumed = [r["loss"] for r in first.history] + [r["loss"] for r in second.history]
    assert len(resumed) == len(uninterrupted) == 6
    assert resumed == pytest.approx(uninterrupted, abs=1e-6, rel=0)
    # and the run really learns something different each step (not a constant)
    assert len({round(v, 6) for v in uninterrupted}) > 1


def test_non_finite_loss_stops_with_step_and_keys(tiny_params, build_tiny, real_batches):
    model, cfg = build_tiny(tiny_params("smaug"))
    bad = dict(real_batches[1])
    bad["video"] = bad["video"].clone()
    bad["video"][0, 0, 0, 0, 0] = float("nan")
    trainer = Trainer(model, cfg, progress=False, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(iter([real_batches[0], bad, real_batches[2]]), steps=3)
    msg = str(err.value)
    assert "in step 2 (after 1 done)" in msg
    for key in bad["key"]:
        assert key in msg
    assert trainer.step == 1
    # the bad step did not touch the weights: they are those after step 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # step 0 trained
    for p in model.parameters():
        assert torch.isfinite(p).all()


def test_accumulation_of_halves_matches_separate_micro_batches(tiny_params, build_tiny, real_batches):
    """accum=2 on two micro-batches = the logged mean of their losses, one optimiser step."""
    params = tiny_params("dense", "pretrain.accum=2", "pretrain.steps=2")
    model, cfg = build_tiny(params)
    trainer = Trainer(model, cfg, progress=False, seed=3)
    result = trainer.fit(iter(real_batches))
    assert result.steps == 2 and result.clips == 16
    assert trainer.optimizer.state_dict()["state"][0]["step"].item() == 2


# --------------------------------------------------------------------------- DDP


def _halves(batches, rank, world):
    out = []
    for b in batches:
        size = b["video"].shape[0] // world
        sl = slice(rank * size, (rank + 1) * size)
        out.append({k: (v[sl] if torch.is_tensor(v) or isinstance(v, list) else v)
                    for k, v in b.items()})
    return out


def _ddp_worker(rank, world, port, params, batches, out_path):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist = init_distributed("cpu")
    try:
        from pipeline.config import section
        from train.config import PretrainConfig
        from train.model import SMAUG, ModelConfig

        torch.manual_seed(0)
        model = SMAUG(section(params, ModelConfig, "model"))
        cfg = section(params, PretrainConfig, "pretrain")
        trainer = Trainer(model, cfg, dist=dist, progress=False, seed=11)
        trainer.fit(iter(_halves(batches, rank, world)))
        torch.save({"losses": [r["loss"] for r in trainer.history],
                    "state": model.state_dict()}, f"{out_path}.{rank}")
    finally:
        shutdown(dist)


def test_two_gloo_ranks_equal_one_process(tmp_path, tiny_params, build_tiny, real_batches):
    """Rank r trains on half r of each global batch; one process accumulates both halves
    (accum=2). Same losses and same weights: DDP averages gradients exactly as accumulation.

    VTC is switched off here because the model's VTC gathers features across ranks (each clip
    meets the negatives of the whole global batch), which a single accumulating process does
    not do; VTM, MLM and MVM with their masks and negatives are per micro-batch."""
    steps = 2
    # the rate is pinned: Adam's first steps move a weight by about lr x sign(grad), so for
    # the few weights whose gradient is rounding noise the two paths differ by up to 2 x lr;
    # 3e-4 keeps that inside the tolerance, whatever params.yaml's default rate is
    no_vtc = "model.objectives.vtc=0 pretrain.lr=3e-4".split()
    params = tiny_params("smaug", f"pretrain.steps={steps}", "pretrain.warmup=1", *no_vtc)
    batches = [{k: v for k, v in b.items() if k != "meta"} for b in real_batches[:steps]]

    out = tmp_path / "rank.pt"
    mp.start_processes(_ddp_worker, args=(2, free_port(), params, batches, str(out)),
                       nprocs=2, join=True, start_method="spawn")
    rank0, rank1 = (torch.load(f"{out}.{r}", weights_only=True) for r in range(2))
    ddp_losses, ddp_state = rank0["losses"], rank0["state"]
    assert rank0["losses"] == rank1["losses"]  # the logged loss is the mean over ranks
    for k, v in ddp_state.items():  # the ranks stay in step
        assert torch.equal(v, rank1["state"][k]), k

    one_params = tiny_params("smaug", f"pretrain.steps={steps}", "pretrain.warmup=1",
                             "pretrain.accum=2", *no_vtc)
    model, cfg = build_tiny(one_params)
    micro = [h for b in batches for h in (_halves([b], 0, 2)[0], _halves([b], 1, 2)[0])]
    trainer = Trainer(model, cfg, dist=DistInfo(), progress=False, seed=11)
    trainer.fit(iter(micro))
    one_losses = [r["loss"] for r in trainer.history]

    assert ddp_losses == pytest.approx(one_losses, abs=1e-5, rel=0)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, ddp_state[k], atol=1e-5), k


def test_precision_resolution_and_bf16_autocast_step(tiny_params, build_tiny, real_batches):
    from train.trainer import resolve_precision

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_precision("auto", cpu) is None  # fp32 on CPU
    assert resolve_precision("auto", gpu, bf16_supported=True) is torch.bfloat16  # bf16 autocast on GPU
    assert resolve_precision("auto", gpu, bf16_supported=False) is torch.float16  # V100: fp16 + scaler
    assert resolve_precision("fp32", gpu) is None
    assert resolve_precision("fp16", cpu) is torch.float16
    model, cfg = build_tiny(tiny_params("dense", "pretrain.precision=bf16"))
    trainer = Trainer(model, cfg, progress=False, seed=0)
    assert trainer.autocast_dtype is torch.bfloat16
    row = trainer.train_step([real_batches[0]])
    assert row["loss"] > 0 and all(p.dtype == torch.float32 for p in model.parameters())


def test_trainer_drives_the_sparsification_warm_up(tiny_params, build_tiny, real_batches):
    # keep rates 1.0 -> 0.5 over 4 steps: the tokens left after sparsification fall step by step
    # (a pure function of the step, like the lr), and evaluation uses the final rates
    params = tiny_params("smaug", "pretrain.steps=6", "pretrain.warmup=1", "pretrain.log_every=1",
                         "model.sparsify.warmup_steps=4")
    model, cfg = build_tiny(params)
    trainer = Trainer(model, cfg, progress=False, seed=7)
    trainer.fit(endless(real_batches))
    final = [r["stats_video_tokens_final"] for r in trainer.history]
    assert final == sorted(final, reverse=True) and final[0] > final[-1]
    assert final[-2] == final[-1]                       # steps 4, 5: at the configured rates
    visible = trainer.history[0]["stats_video_tokens_visible"]
    assert final[0] == visible                          # step 0: nothing dropped yet
    model.train()
    model.set_train_step(0)
    model.eval()
    assert model.video.keep_rates() == (model.cfg.sparsify.spatial_keep, model.cfg.sparsify.temporal_keep)
