"""Atomic, safely loadable checkpoints.

A checkpoint is one folder (design.md):

    model.safetensors   the model weights (safetensors: no code runs on load)
    optim.pt            optimiser, schedule and RNG state; only tensors and plain containers,
                        so it loads with ``torch.load(weights_only=True)``
    state.json          step, recipe, the full params the run used, and the model config

It is written into a temporary sibling folder and renamed into place, so a crash or a
pre-emption mid-write leaves the previous checkpoint intact, never a half-written one.

For evaluation and fine-tuning, :func:`load_model` rebuilds the SMAUG model from a checkpoint
folder alone.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optim.pt"
STATE_FILE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete or unsafe to load."""


# --------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, as tensors and plain containers (weights_only-safe)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- writing


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: Any = None,
    step: int,
    state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically; returns its path.

    ``state`` goes into state.json (JSON-able: recipe, params, model config, metrics);
    ``extra`` goes into optim.pt (tensors and plain containers only, e.g. the data position).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    # save_model handles tied weights (e.g. an MLM head sharing the word embeddings).
    safetensors.torch.save_model(unwrap(model), str(tmp / MODEL_FILE))
    optim_state = {
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "schedule": schedule.state_dict() if schedule is not None else None,
        "rng": rng_state(),
        "extra": extra or {},
    }
    torch.save(optim_state, tmp / OPTIM_FILE)
    meta = {"step": int(step), "time": time.time(), **(state or {})}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2, default=str))
    # Swap in: the old folder is moved aside first so there is always one complete copy.
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


# --------------------------------------------------------------------------- reading


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"{folder}: checkpoint is missing {name}")
    return path


def exists(folder: str | Path) -> bool:
    """The one rule for "there is a checkpoint here": its three files are in place."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in (MODEL_FILE, OPTIM_FILE, STATE_FILE))


def read_state(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    try:
        return json.loads(_require(folder, STATE_FILE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder / STATE_FILE}: not valid JSON ({err})") from None


def load_training_state(folder: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """optim.pt loaded with ``weights_only=True``: a file that needs arbitrary unpickling
    (and so could run code) is refused with :class:`CheckpointError`."""
    path = _require(Path(folder), OPTIM_FILE)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load, it holds objects other than tensors and plain "
            f"containers (weights_only=True): {str(err).splitlines()[0]}"
        ) from None


def load_weights(model: torch.nn.Module, folder: str | Path, *, strict: bool = True) -> None:
    path = _require(Path(folder), MODEL_FILE)
    missing, unexpected = safetensors.torch.load_model(unwrap(model), str(path), strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )


def resume(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: Any = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load weights, optimiser, schedule and RNG state; returns optim.pt's dict (step, extra)."""
    load_weights(model, folder)
    device = next(unwrap(model).parameters()).device
    training = load_training_state(folder, map_location=device)
    if optimizer is not None and training["optimizer"] is not None:
        optimizer.load_state_dict(training["optimizer"])
    if schedule is not None and training["schedule"] is not None:
        schedule.load_state_dict(training["schedule"])
    if restore_rng:
        rng = training["rng"]
        rng["torch"] = rng["torch"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [t.cpu() for t in rng["cuda"]]
        set_rng_state(rng)
    return training


def load_model(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the SMAUG model of a checkpoint folder: ``(model, state)``.

    ``state`` is state.json (step, recipe, ``params`` the run used, ``model_config``). The
    model is in eval mode on ``map_location``; weights come from safetensors only.
    """
    from pipeline.config import build
    from train.model import SMAUG, ModelConfig

    state = read_state(folder)
    if "model_config" not in state:
        raise CheckpointError(f"{folder}: state.json has no model_config; not a SMAUG checkpoint")
    cfg = build(ModelConfig, state["model_config"], "model")
    model = SMAUG(cfg)
    load_weights(model, folder)
    model.to(map_location).eval()
    return model, state

