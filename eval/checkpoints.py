"""Finding, fingerprinting and loading the checkpoints evaluation and fine-tuning use.

Every load goes through :mod:`train.checkpoint` (safetensors weights, ``weights_only``
optimiser state), so nothing in a checkpoint folder can run code.

Fine-tuned checkpoints hold a task module (:mod:`eval.qa`) around the model; their
state.json adds ``task`` (and ``answers`` for open-ended QA), so :func:`load_task_model`
rebuilds exactly the module that was trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from pipeline.config import build, section

MODEL_FILE = "model.safetensors"


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder at ``path``, or its ``final`` / ``last`` sub-folder.

    Missing checkpoints get a message that says what is expected where.
    """
    path = Path(path)
    for candidate in (path, path / "final", path / "last"):
        if (candidate / MODEL_FILE).is_file():
            return candidate
    from train.checkpoint import CheckpointError

    raise CheckpointError(
        f"{path}: no checkpoint here (expected {path}/{MODEL_FILE} with state.json and optim.pt, "
        f"as written by `python -m train.pretrain` or `python -m train.finetune`)"
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(folder: str | Path) -> dict[str, Any]:
    """Path and sha256 of model.safetensors, plus the step and recipe from state.json."""
    from train.checkpoint import read_state

    folder = resolve_checkpoint(folder)
    state = read_state(folder)
    return {"path": folder.as_posix(), "sha256": sha256_file(folder / MODEL_FILE),
            "step": int(state.get("step", 0)), "recipe": state.get("recipe")}


def model_config_of(state: dict):
    from train.checkpoint import CheckpointError
    from train.model import ModelConfig

    if "model_config" not in state:
        raise CheckpointError("state.json has no model_config; not a SMAUG checkpoint")
    return build(ModelConfig, state["model_config"], "model")


def loader_config_of(state: dict, params: dict, *, num_frames: int | None, batch_size: int):
    """The loader settings the checkpoint was trained with (image size, normalisation,
    text length), with this run's frame count and batch size."""
    from train.data import LoaderConfig

    source = state.get("params") if isinstance(state.get("params"), dict) else params
    cfg = section(source, LoaderConfig, "loader")
    changes: dict[str, Any] = {"batch_size": batch_size}
    if num_frames is not None:
        changes["num_frames"] = num_frames
    return dataclasses.replace(cfg, **changes)


def load_weights_into(module: nn.Module, folder: str | Path, *, allow_unexpected: bool = False) -> None:
    """safetensors weights into ``module``; every parameter of the module must be covered.

    ``allow_unexpected``: the file may hold more (heads of objectives that fine-tuning
    switches off), which are ignored.
    """
    from train.checkpoint import CheckpointError

    path = Path(folder) / MODEL_FILE
    missing, unexpected = safetensors.torch.load_model(module, str(path), strict=False)
    if missing or (unexpected and not allow_unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )


def load_task_model(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild whatever a checkpoint holds: the bare model (pre-training, retrieval
    fine-tuning) or a task module (open-ended QA, multiple choice). Returns (module, state)."""
    from train.checkpoint import read_state
    from train.data.text import load_tokenizer
    from train.model import SMAUG

    from train.tasks import AnswerVocab, MultipleChoice, OpenEndedQA

    folder = resolve_checkpoint(folder)
    state = read_state(folder)
    cfg = model_config_of(state)
    model = SMAUG(cfg)
    task = state.get("task")
    max_len = int(state.get("max_len") or cfg.text.max_len)
    if task == "qa":
        module: nn.Module = OpenEndedQA(model, AnswerVocab(state["answers"]), load_tokenizer(cfg.text.path), max_len)
    elif task == "mc":
        module = MultipleChoice(model, load_tokenizer(cfg.text.path), max_len)
    else:
        module = model
    load_weights_into(module, folder)
    module.to(map_location).eval()
    return module, state
