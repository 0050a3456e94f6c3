"""Precision and memory options of the shared Trainer: fp16 autocast with a gradient scaler
(skipped overflow steps leave the weights and the lr schedule where they were; the scaler
travels in checkpoints), gradient checkpointing (same loss and gradients, fewer saved
activations), and torch.compile (same losses as eager).

CPU autocast supports fp16 in the torch this project pins, so the fp16 path runs here for real.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from train import trainer as trainer_module
from train.model.layers import checkpoint_targets, set_grad_checkpointing
from train.trainer import NonFiniteLossError, Trainer


def endless(batches):
    for i in itertools.count():
        yield batches[i % len(batches)]


def set_scale(trainer: Trainer, scale: float) -> None:
    state = trainer.scaler.state_dict()
    state["scale"] = scale
    trainer.scaler.load_state_dict(state)


def huge_scale(trainer: Trainer) -> None:
    """A scale that overflows every fp16 gradient: each step is an overflow the scaler skips."""
    set_scale(trainer, 2.0**100)


def test_fp16_steps_with_a_gradient_scaler(tiny_params, build_tiny, real_batches):
    model, cfg = build_tiny(tiny_params("smaug", "pretrain.precision=fp16", "pretrain.steps=3"))
    trainer = Trainer(model, cfg, progress=False, seed=0)
    assert trainer.autocast_dtype is torch.float16 and trainer.scaler.is_enabled()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_scale(trainer, 2.0**8)  # small enough for this model's gradients
    trainer.fit(endless(real_batches))
    rows = trainer.history
    assert [r["skipped"] for r in rows] == [0.0, 0.0, 0.0]
    assert all(r["grad_scale"] == 2.0**8 for r in rows)  # no overflow, no growth yet
    assert all(torch.isfinite(torch.tensor(r["grad_norm"])) for r in rows)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # bf16 and fp32 runs carry a scaler that does nothing
    model, cfg = build_tiny(tiny_params("smaug", "pretrain.precision=bf16"))
    assert not Trainer(model, cfg, progress=False).scaler.is_enabled()


def test_overflowed_steps_are_skipped_without_moving_the_schedule(tiny_params, build_tiny, real_batches):
    params = tiny_params("smaug", "pretrain.precision=fp16", "pretrain.steps=6", "pretrain.warmup=3")
    model, cfg = build_tiny(params)
    trainer = Trainer(model, cfg, progress=False, seed=0)
    huge_scale(trainer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit(endless(real_batches), steps=2)
    assert [r["skipped"] for r in trainer.history] == [1.0, 1.0]
    assert trainer.step == 2 and trainer.skipped_steps == 2 and trainer.schedule_step == 0
    assert trainer.scaler.get_scale() == 2.0**98  # halved per overflow
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # nothing was applied
    assert not trainer.optimizer.state  # AdamW never stepped (its moments and counts untouched)

    set_scale(trainer, 2.0**8)
    trainer.fit(endless(real_batches), steps=4)
    lrs = [r["lr"] for r in trainer.history]
    # the warm-up starts when updates do: the skipped steps ran at step 0's rate, as does the
    # first applied one
    assert lrs == pytest.approx([trainer.schedule.lr_at(s) for s in (0, 0, 0, 1)])
    assert [r["skipped"] for r in trainer.history[2:]] == [0.0, 0.0]
    assert trainer.optimizer.state_dict()["state"][0]["step"].item() == 2


def test_endless_overflow_stops_the_run(tiny_params, build_tiny, real_batches, monkeypatch):
    monkeypatch.setattr(trainer_module, "MAX_CONSECUTIVE_SKIPS", 2)
    model, cfg = build_tiny(tiny_params("dense", "pretrain.precision=fp16"))
    trainer = Trainer(model, cfg, progress=False, seed=0)
    huge_scale(trainer)
    with pytest.raises(NonFiniteLossError, match=r"2 fp16 steps in a row .*in step 2 \(after 1 done\)"):
        trainer.fit(endless(real_batches), steps=4)
    assert trainer.step == 1 and trainer.skipped_steps == 1


def test_checkpoint_restores_the_scaler_and_skipped_steps(tmp_path, tiny_params, build_tiny, real_batches):
    from train.checkpoint import load_training_state

    params = tiny_params("smaug", "pretrain.precision=fp16", "pretrain.steps=6")
    model, cfg = build_tiny(params)
    first = Trainer(model, cfg, progress=False, seed=0, ckpt_dir=tmp_path / "run")
    huge_scale(first)
    first.fit(endless(real_batches), steps=1)  # one skip: scale 2**99
    set_scale(first, 2.0**7)
    first.fit(endless(real_batches), steps=3)  # two applied steps: the growth tracker counts them
    first.save()
    saved = first.scaler.state_dict()
    assert saved["_growth_tracker"] == 2 and first.skipped_steps == 1
    assert load_training_state(tmp_path / "run")["scaler"]["scale"] == 2.0**7  # weights_only load

    model, cfg = build_tiny(params)
    second = Trainer(model, cfg, progress=False, seed=0)
    assert second.scaler.get_scale() == 2.0**16  # the initial scale, before resuming
    assert second.resume(tmp_path / "run") == 3
    assert second.scaler.state_dict() == saved
    assert second.skipped_steps == 1 and second.schedule_step == 2
    # a bf16 checkpoint has no scaler state; an fp16 run resuming it keeps its initial scale
    model, cfg = build_tiny(tiny_params("smaug", "pretrain.precision=bf16"))
    bf16 = Trainer(model, cfg, progress=False, ckpt_dir=tmp_path / "bf16")
    bf16.save()
    assert load_training_state(tmp_path / "bf16")["scaler"] is None


# --------------------------------------------------------------------------- checkpointing

# One trainable BERT layer (of two), stochastic depth in the video tower: recomputation must
# replay the same random draws.
CHECKPOINT_MODEL = ("model.text.num_layers=2", "model.text.freeze_layers=1", "model.video.drop_path=0.2")


def _loss_and_grads(model, batch, seed):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(batch, generator=torch.Generator().manual_seed(seed))
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


def _calls(module):
    count = [0]
    module.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


def test_grad_checkpointing_gives_the_same_loss_and_gradients(tiny_params, build_tiny, real_batches):
    import copy

    model, _ = build_tiny(tiny_params("smaug", *CHECKPOINT_MODEL))
    plain, recomputed = model, copy.deepcopy(model)
    n = set_grad_checkpointing(recomputed, True)
    video_blocks = len(recomputed.video.blocks)
    fusion = len(recomputed.fusion.layers)
    bert = recomputed.text.bert.encoder.layer
    assert bert[1] in checkpoint_targets(recomputed) and bert[0] not in checkpoint_targets(recomputed)
    assert n >= video_blocks + fusion + 1
    # recomputed in backward: a block's inner modules run twice per step, the frozen BERT layer once
    calls = {"video": _calls(recomputed.video.blocks[0].attn), "fusion": _calls(recomputed.fusion.layers[0].mlp),
             "bert": _calls(bert[1].attention), "frozen": _calls(bert[0].attention)}

    batch = real_batches[0]
    loss_a, grads_a = _loss_and_grads(plain, batch, seed=5)
    fwd = {k: c[0] for k, c in calls.items()}
    loss_b, grads_b = _loss_and_grads(recomputed, batch, seed=5)
    per_step = {k: c[0] - fwd[k] for k, c in calls.items()}
    assert fwd == {"video": 0, "fusion": 0, "bert": 0, "frozen": 0}  # hooks only on the copy
    assert per_step["frozen"] >= 1 and per_step["bert"] == 2 * per_step["frozen"]
    assert per_step["video"] == 2 and per_step["fusion"] % 2 == 0 and per_step["fusion"] >= 2

    assert loss_b == pytest.approx(float(loss_a), abs=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name, g in grads_a.items():
        assert torch.allclose(g, grads_b[name], atol=1e-6, rtol=1e-5), name
    # the same weights either way: a checkpoint of one loads into the other
    assert recomputed.state_dict().keys() == plain.state_dict().keys()
    set_grad_checkpointing(recomputed, False)
    assert type(recomputed.video.blocks[0]) is type(plain.video.blocks[0])


def test_grad_checkpointing_keeps_fewer_activations(tiny_params, build_tiny, real_batches):
    """Tensors autograd saves outside the recomputed blocks: far fewer bytes than without."""
    model, cfg = build_tiny(tiny_params("smaug", *CHECKPOINT_MODEL))

    def saved_bytes(m):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _loss_and_grads(m, real_batches[0], seed=1)
        return total[0]

    plain = saved_bytes(model)
    set_grad_checkpointing(model, True)
    assert saved_bytes(model) < 0.6 * plain


def test_trainer_option_turns_checkpointing_on(tiny_params, build_tiny, real_batches):
    model, cfg = build_tiny(tiny_params("dense", "pretrain.grad_checkpointing=true"))
    trainer = Trainer(model, cfg, progress=False, seed=0)
    assert all(type(m).__mro__[1].__name__ == "_Recompute" for m in checkpoint_targets(model))
    assert trainer.train_step([real_batches[0]])["loss"] > 0


# --------------------------------------------------------------------------- torch.compile


@pytest.mark.slow  # inductor compiles the model's graphs with a C++ compiler: minutes on 2 cores
def test_compiled_model_trains_like_eager(tiny_params, build_tiny, real_batches, monkeypatch):
    import torch._inductor.config

    # Masks and negatives are random draws: inductor's own generator draws other numbers from
    # the same seed (the losses differed by 20%), so make it draw torch's, as eager does.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    losses = {}
    for compiled in (False, True):
        model, cfg = build_tiny(tiny_params("dense", "pretrain.steps=3", f"pretrain.compile={compiled}"))
        trainer = Trainer(model, cfg, progress=False, seed=0)
        trainer.fit(endless(real_batches))
        losses[compiled] = [r["loss"] for r in trainer.history]
    assert losses[True] == pytest.approx(losses[False], abs=1e-4, rel=1e-4)
    assert len(set(losses[False])) > 1
