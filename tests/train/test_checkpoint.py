"""Checkpoints: safetensors + weights_only round trip, unsafe files refused, atomic writes."""

from __future__ import annotations

import json
import os

import pytest
import torch

from train import checkpoint as ckpt
from train.trainer import Trainer


class NotATensor:
    """Any class: unpickling it would run arbitrary code paths."""

    def __init__(self):
        self.payload = "x"


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path, tiny_params, build_tiny, real_batches):
    params = tiny_params("smaug")
    model, cfg = build_tiny(params)
    trainer = Trainer(model, cfg, progress=False, seed=0)
    trainer.fit(iter(real_batches[:2]), steps=2)
    folder = tmp_path / "ckpt"
    torch.manual_seed(123)
    trainer.extra_state = lambda: {"data": {"epoch": 1, "batch": 7}}
    trainer.save(folder, recipe="smaug", model_config=params["model"])
    expected_draw = torch.rand(3)

    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optim.pt", "state.json", "text"]
    assert {"vocab.txt", "config.json"} <= {p.name for p in (folder / "text").iterdir()}  # no weights
    assert not list((folder / "text").glob("*.safetensors"))
    assert not list(tmp_path.glob(".ckpt.*"))  # no temp folders left behind
    # optim.pt loads with weights_only=True (tensors and plain containers only)
    raw = torch.load(folder / "optim.pt", weights_only=True)
    assert raw["step"] == 2 and raw["extra"]["data"] == {"epoch": 1, "batch": 7}

    other, _ = build_tiny(tiny_params("smaug", "seed=5"))
    torch.manual_seed(999)
    with torch.no_grad():  # make sure the weights really come from the file
        for p in other.parameters():
            p.add_(1.0)
    resumed = Trainer(other, cfg, progress=False, seed=0)
    assert resumed.resume(folder) == 2
    assert torch.equal(torch.rand(3), expected_draw)  # RNG state restored
    for (n, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), n
    s1, s2 = trainer.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])


def test_load_model_rebuilds_from_folder(tmp_path, tiny_params, build_tiny):
    from pipeline.config import section, to_dict
    from train.model import ModelConfig

    params = tiny_params("dense")
    model, _ = build_tiny(params)
    cfg = section(params, ModelConfig, "model")
    ckpt.save_checkpoint(tmp_path / "run", model, step=5,
                         state={"recipe": "dense", "model_config": to_dict(cfg)})
    loaded, state = ckpt.load_model(tmp_path / "run")
    assert state["step"] == 5 and state["recipe"] == "dense"
    assert loaded.cfg == cfg and not loaded.training
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n


def test_pickle_bearing_file_is_refused(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    folder = ckpt.save_checkpoint(tmp_path / "run", model, step=1)
    torch.save({"step": 1, "optimizer": None, "schedule": None, "rng": {}, "extra": NotATensor()},
               folder / "optim.pt")
    with pytest.raises(ckpt.CheckpointError) as refused:
        ckpt.load_training_state(folder)
    message = str(refused.value)
    # It names the file and says why; it does not advise a way around the refusal.
    assert message.startswith(f"{folder / 'optim.pt'}: not loaded, for safety")
    assert "pickled objects that are not plain tensors" in message and "NotATensor" in message
    assert "weights_only" not in message and "can still be loaded" not in message
    with pytest.raises(ckpt.CheckpointError, match="not loaded, for safety"):
        ckpt.resume(folder, model)


def test_missing_or_broken_files_named(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint folder"):
        ckpt.read_state(tmp_path / "nothing")
    folder = ckpt.save_checkpoint(tmp_path / "run", model, step=1)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ckpt.CheckpointError, match="missing model.safetensors"):
        ckpt.load_weights(model, folder)
    with pytest.raises(ckpt.CheckpointError, match="no model_config"):
        ckpt.load_model(folder)


def test_rewrite_replaces_atomically(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    folder = tmp_path / "run"
    ckpt.save_checkpoint(folder, model, step=1)
    ckpt.save_checkpoint(folder, model, step=2)
    assert json.loads((folder / "state.json").read_text())["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


# --------------------------------------------------------------------------- errors for people


def test_truncated_weights_name_the_file(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    folder = ckpt.save_checkpoint(tmp_path / "run", model, step=1)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ckpt.CheckpointError, match=rf"^{weights}: not a readable safetensors file"):
        ckpt.resume(folder, model)


def test_wrong_shape_weights_name_the_file_and_the_tensor(tmp_path, tiny_params, build_tiny):
    small, _ = build_tiny(tiny_params("dense"))
    wide, _ = build_tiny(tiny_params("dense", "model.video.width=48"))
    folder = ckpt.save_checkpoint(tmp_path / "run", small, step=1)
    with pytest.raises(ckpt.CheckpointError) as wrong:
        ckpt.load_weights(wide, folder)
    message = str(wrong.value)
    assert message.startswith(f"{folder / 'model.safetensors'}: ") and "another shape" in message
    assert "size mismatch for video." in message


def test_programs_print_one_error_line_and_exit_2(tmp_path, params_file, overrides, tiny_params,
                                                   build_tiny, pretrain_shards, capsys):
    """train.pretrain (resuming), train.finetune (--init) and eval.evaluate on a truncated file."""
    from pipeline.config import section, to_dict
    from train import finetune, pretrain
    from train.model import ModelConfig

    from eval import evaluate

    params = tiny_params("smaug")
    model, _ = build_tiny(params)
    run_dir = tmp_path / "models" / "smaug"
    argv = ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=2")]
    run = pretrain.load_run_config(str(params_file), "smaug", overrides("pretrain.steps=2"))
    identity = pretrain.run_identity(run)  # so the resume gets as far as loading
    ckpt.save_checkpoint(run_dir, model, step=1, state={
        "recipe": "smaug", "finished": False, "identity": identity,
        "model_config": to_dict(section(params, ModelConfig, "model"))})
    weights = run_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    runs = {
        "pretrain": lambda: pretrain.main(argv),
        "finetune": lambda: finetune.main(["--task", "retrieval", "--params", str(params_file), "--init",
                                           str(run_dir), "--out", str(tmp_path / "ft"), *overrides()]),
        "evaluate": lambda: evaluate.main(["--recipe", "smaug", "--params", str(params_file), *overrides(),
                                           f"eval.pretrain_dir={tmp_path / 'models'}",
                                           # evaluation checks its data before any checkpoint: give it some
                                           "eval.tasks=[retrieval]", f"eval.retrieval.shards={pretrain_shards}",
                                           "eval.retrieval.order_pairs=null"]),
    }
    for name, run in runs.items():
        capsys.readouterr()
        assert run() == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith(f"error: {weights}: not a readable safetensors file"), (name, err)


# --------------------------------------------------------------------------- interrupted swaps


def _copy(src, dst, *, step, written_at):
    import shutil

    shutil.copytree(src, dst)
    state = json.loads((dst / "state.json").read_text())
    (dst / "state.json").write_text(json.dumps({**state, "step": step, "time": written_at}))


# What a kill at each point of save_checkpoint leaves beside the run folder "run" (step 1 old,
# step 2 new), and the step the folder must hold after repair.
SWAP_STATES = {
    "partial": ({"run": 1, ".run.tmp-4242": "model only"}, 1),
    "written": ({"run": 1, ".run.tmp-4242": 2}, 2),
    "aside": ({".run.old-4242": 1, ".run.tmp-4242": 2}, 2),  # between the two renames
    "swapped": ({"run": 2, ".run.old-4242": 1}, 2),
    "removing old": ({"run": 2, ".run.old-4242": "model only"}, 2),
    "repair cut short": ({".run.old-4242": 1}, 1),
    "first write": ({".run.tmp-4242": "model only"}, None),
}


@pytest.mark.parametrize("point", list(SWAP_STATES))
def test_every_swap_point_repairs_to_the_newest_complete_checkpoint(tmp_path, tiny_params, build_tiny, point):
    model, _ = build_tiny(tiny_params("dense"))
    proto = ckpt.save_checkpoint(tmp_path / "proto" / "run", model, step=0)
    parent = tmp_path / "runs"
    parent.mkdir()
    layout, expected = SWAP_STATES[point]
    for name, what in layout.items():
        if what == "model only":  # killed while writing: only the weights are there
            (parent / name).mkdir()
            (parent / name / "model.safetensors").write_bytes((proto / "model.safetensors").read_bytes())
        else:
            _copy(proto, parent / name, step=what, written_at=1000.0 + what)
    found = ckpt.find_checkpoint(parent / "run")
    assert sorted(p.name for p in parent.iterdir()) == (["run"] if expected is not None else [])
    if expected is None:
        assert found is None
    else:
        assert found == parent / "run" and ckpt.read_state(found)["step"] == expected
        ckpt.resume(found, model)  # loads


# --------------------------------------------------------------------------- a linked run folder
# Users link the run folder (models/pretrain/smaug) or its parent to scratch space: the checkpoint
# is written in the link's target, and the link stays a link.


def test_a_symlinked_run_folder_is_written_through_and_stays_a_link(tmp_path, tiny_params, build_tiny):
    model, _ = build_tiny(tiny_params("dense"))
    scratch = tmp_path / "scratch"
    (tmp_path / "models").mkdir()
    link = tmp_path / "models" / "run"
    link.symlink_to(scratch / "run42")  # dangling until the first checkpoint: made where it points
    for step in (1, 2):
        assert ckpt.save_checkpoint(link, model, step=step) == link
        assert link.is_symlink() and os.readlink(link) == str(scratch / "run42")
        assert ckpt.read_state(scratch / "run42")["step"] == step
    assert sorted(p.name for p in scratch.iterdir()) == ["run42"]  # no leftovers beside the target
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["run"]
    assert ckpt.find_checkpoint(link) == link
    ckpt.resume(link, model)

    linked_parent = tmp_path / "linked"  # a link above the run folder
    linked_parent.symlink_to(scratch)
    for step in (3, 4):
        ckpt.save_checkpoint(linked_parent / "other", model, step=step)
    assert linked_parent.is_symlink() and ckpt.read_state(scratch / "other")["step"] == 4
    assert sorted(p.name for p in scratch.iterdir()) == ["other", "run42"]


@pytest.mark.parametrize("point", ["written", "aside", "swapped", "repair cut short"])
def test_an_interrupted_write_through_a_link_is_repaired_in_its_target(tmp_path, tiny_params, build_tiny,
                                                                       point):
    """A kill in save_checkpoint through a linked run folder leaves its copies beside the target
    (the writer works there): the next start repairs them there, and the link still leads to it."""
    model, _ = build_tiny(tiny_params("dense"))
    proto = ckpt.save_checkpoint(tmp_path / "proto" / "run", model, step=0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    link = tmp_path / "models" / "smaug"
    link.parent.mkdir()
    link.symlink_to(scratch / "run")
    layout, expected = SWAP_STATES[point]
    for name, what in layout.items():
        if what == "model only":
            (scratch / name).mkdir()
            (scratch / name / "model.safetensors").write_bytes((proto / "model.safetensors").read_bytes())
        else:
            _copy(proto, scratch / name, step=what, written_at=1000.0 + what)
    assert ckpt.leftovers(link)  # found beside the target
    assert ckpt.find_checkpoint(link) == link
    assert sorted(p.name for p in scratch.iterdir()) == ["run"]
    assert link.is_symlink() and ckpt.read_state(link)["step"] == expected
    ckpt.save_checkpoint(link, model, step=9)
    assert link.is_symlink() and ckpt.read_state(scratch / "run")["step"] == 9


def test_pretrain_resumes_through_a_linked_run_folder(tmp_path, params_file, overrides, monkeypatch):
    """`python -m train.pretrain` with models/smaug a link to scratch space: stopped (SIGUSR1) after
    a rewrite of its checkpoint, then rerun to the end, all through the link."""
    from tests.train.conftest import sigusr1_at
    from train import pretrain
    from train.trainer import EXIT_INTERRUPTED

    scratch = tmp_path / "scratch" / "smaug"
    scratch.mkdir(parents=True)
    link = tmp_path / "models" / "smaug"
    link.parent.mkdir()
    link.symlink_to(scratch)
    argv = ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=4", "pretrain.ckpt_every=1")]
    original = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", sigusr1_at(2))
    assert pretrain.main(argv) == EXIT_INTERRUPTED  # checkpoints at steps 1 and 2, the stop's at 3
    assert link.is_symlink() and ckpt.read_state(scratch)["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", original)
    assert pretrain.main(argv) == 0
    assert link.is_symlink() and os.readlink(link) == str(scratch)
    state = ckpt.read_state(scratch)
    assert state["step"] == 4 and state["finished"] is True
    assert sorted(p.name for p in scratch.parent.iterdir()) == ["smaug"]
    assert not [p for p in link.parent.iterdir() if p.name not in ("smaug", ".smaug.lock")]
