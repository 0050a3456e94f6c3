"""What pre-training and fine-tuning share around the loop: the run folder, its identity, resuming.

A run lives in one folder (``models/pretrain/<run name>/``, ``models/finetune/<run>/<task>/``).
The folder records what made it: the resolved configuration that decides what is learnt and
the identity of its data (every shard's name, size and a hash of its head). The one rule for an
existing folder (:func:`open_run`):

* nothing there, or ``--fresh``: a new run;
* a checkpoint made by the same configuration on the same data: resume it, or, if it finished,
  do nothing;
* anything else: stop and say what differs, offering ``--fresh`` (start over here) or a new
  ``--run-name`` (train beside it). A run is never continued, or skipped as finished, on
  other data or other settings.

A DVC stage (``--as-stage``) keeps its run folder between ``dvc repro`` calls (``persist: true``:
DVC would otherwise delete an interrupted run's checkpoints before the rerun, and a multi-day
pre-training with them). DVC runs a stage because something it depends on changed, so there the
rule is: resume an interrupted run only when its settings, data and code (:func:`code_fingerprint`)
are those of now; in every other case, a finished run included, start over.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Literal

from pipeline.config import ConfigError
from train import checkpoint

HEAD_BYTES = 1 << 16  # hash of a shard's first 64 KiB: cheap on terabytes, catches rewritten shards
SHORT_BATCH_SHARE = 0.1  # warn when more than this share of an epoch's clips came in short batches

log = logging.getLogger(__name__)


class RunMismatch(ConfigError):
    """An existing run folder was made by other settings or other data."""


def data_identity(shards: str | list, key: str = "shards") -> list[dict[str, Any]]:
    """Every shard of ``shards`` (folder, glob, brace pattern, list): name, size, head hash.

    A remote shard (``s3://``, ``pipe:``...) is recorded by its URL alone. Missing shards are a
    configuration error naming ``key`` (the setting that pointed at them).
    """
    from train.data.shards import expand_shards

    try:
        urls = expand_shards(shards)
    except FileNotFoundError as err:
        raise ConfigError(f"{key}: {err}") from None
    out = []
    for url in urls:
        if "://" in url or url.startswith("pipe:"):
            out.append({"path": url})
            continue
        path = Path(url)
        with path.open("rb") as f:
            head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()[:16]
        out.append({"path": str(path), "bytes": path.stat().st_size, "head_sha256": head})
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, tuple):
        tree = list(tree)
    return {prefix[:-1]: tree}


def differences(recorded: dict[str, Any], current: dict[str, Any], limit: int = 6) -> list[str]:
    """``key: recorded -> current`` for each setting that differs (data: the shards that differ)."""
    out = []
    old_data, new_data = recorded.get("data"), current.get("data")
    if old_data != new_data:
        old = {d["path"]: d for d in old_data or []}
        new = {d["path"]: d for d in new_data or []}
        changed = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
        names = ", ".join(changed[:limit]) + (f" and {len(changed) - limit} more" if len(changed) > limit else "")
        out.append(f"shards differ ({len(old)} recorded, {len(new)} now): {names}")
    old_cfg, new_cfg = _flatten(recorded.get("config", {})), _flatten(current.get("config", {}))
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key, "<unset>") != new_cfg.get(key, "<unset>"):
            out.append(f"{key}: {old_cfg.get(key, '<unset>')!r} -> {new_cfg.get(key, '<unset>')!r}")
    return out


# What a run's code is, for a DVC stage's resume: the trees a training imports from (pipeline:
# settings, recipes, provenance; train: model, loader, trainer). Wider than any one stage's deps in
# dvc.yaml, so an edit there can restart an interrupted stage that did not need it: the safe side.
CODE_TREES = ("train", "pipeline")


def code_fingerprint(root: str | Path | None = None) -> str:
    """sha256 over every ``.py`` and ``.yaml`` file under :data:`CODE_TREES` (path and bytes)."""
    from pipeline.config import REPO_ROOT

    root = Path(root or REPO_ROOT)
    digest = hashlib.sha256()
    for tree in CODE_TREES:
        files = sorted(p for p in (root / tree).rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()
                       and "__pycache__" not in p.parts)
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def stage_restart_reason(state: dict[str, Any], identity: dict[str, Any], code: str) -> str | None:
    """Why a DVC stage must not resume the run ``state`` records (None: resume it)."""
    if state.get("finished"):
        return "it finished; DVC runs the stage again because something it depends on changed"
    recorded = state.get("identity")
    if recorded is None:
        return "the checkpoint records no configuration or data (written by an older version)"
    diff = differences(recorded, identity)
    if diff:
        return "made with other settings or data: " + "; ".join(diff[:4]) + (
            f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
    if state.get("code") != code:
        return (f"the code under {'/, '.join(CODE_TREES)}/ changed since it started (to keep its steps anyway, "
                "run the stage's command by hand without --as-stage, then `dvc commit` the stage)")
    return None


def open_run(folder: str | Path, identity: dict[str, Any], *, fresh: bool, stage_code: str | None = None,
             ) -> tuple[Literal["new", "resume", "finished"], dict[str, Any] | None]:
    """The one rule for an existing run folder (module doc): ``(what to do, its state)``.

    ``stage_code`` (a DVC stage's run: :func:`code_fingerprint`) applies the stage's rule instead:
    "resume" or "new", never "finished" or a mismatch error; the reason for starting over is logged.
    Call it after :func:`train.checkpoint.repair` has undone an interrupted checkpoint write
    (by the one process that writes the folder).
    """
    folder = Path(folder)
    if fresh or checkpoint.find_checkpoint(folder, repair_first=False) is None:
        return "new", None
    state = checkpoint.read_state(folder)
    if stage_code is not None:
        why = stage_restart_reason(state, identity, stage_code)
        if why is None:
            return "resume", state
        log.warning("%s: starting over, not resuming (step %s): %s", folder, state.get("step"), why)
        return "new", None
    recorded = state.get("identity")
    diff = differences(recorded, identity) if recorded is not None else [
        "the checkpoint records no configuration or data (written by an older version)"]
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise RunMismatch(
            f"{folder}: this run was made with other settings or data ({shown}). "
            "Pass --fresh to start it over, or --run-name NAME to train a new run beside it")
    if state.get("finished"):
        try:
            checkpoint.check_weights_file(folder)
        except checkpoint.CheckpointError as err:
            raise checkpoint.CheckpointError(f"{err}; this finished run cannot be used: pass --fresh to "
                                             "train it again") from None
        return "finished", state
    return "resume", state


def code_of_run(state: dict[str, Any] | None, code: str) -> str:
    """The code a checkpoint records: this code for a new run or a resume by the same code; a
    run resumed by hand with other code is marked so, and no DVC stage resumes it."""
    if state is None or state.get("code") == code:
        return code
    return "changed during the run"


def restart_stage_folder(folder: str | Path, dist) -> None:
    """A DVC stage starting over removes the run folder's old checkpoint first, as DVC removes a
    stage's outputs before running it (the folder is a persisted output): nothing of the old run
    is left to be read as this one's. Every rank has decided (:func:`open_run`) before it goes."""
    import shutil

    from train.distributed import barrier

    barrier(dist)
    folder = Path(folder)
    if dist.is_main and folder.exists():
        shutil.rmtree(folder)
    barrier(dist)


SKIPPED_KEYS_KEPT = 50  # how many skipped samples the metrics file names


class NoTrainingBatch(ConfigError):
    """A whole pass over the training shards gave no batch: they hold no sample, or every sample
    was skipped (no caption, an undecodable video). A problem of the data, not a crash: the
    command line prints it as one ``error:`` line, naming the commonest reasons."""


def no_batch_error(epoch: int, skipped_keys: list) -> NoTrainingBatch:
    if not skipped_keys:
        return NoTrainingBatch(f"epoch {epoch} of the training shards yielded no batch: the shards hold "
                               "no sample (are they empty?)")
    # a reason names its sample ("sample 'k' has no captions"): count the reasons without the key
    reasons = Counter(str(reason).replace(repr(str(key)), "<key>") for key, reason in skipped_keys)
    common = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(3))
    first = ", ".join(str(key) for key, _ in skipped_keys[:3])
    return NoTrainingBatch(
        f"epoch {epoch} of the training shards yielded no batch: all {len(skipped_keys)} samples were "
        f"skipped ({common}; first: {first}). Pre-training reads each clip with its caption: check "
        "that the shards were made from an annotation file with captions and that their videos decode")


def short_batch_warning(epoch: int, sizes: list[int], batch_size: int, workers: int) -> str | None:
    """A warning when many of an epoch's clips came in batches short of ``batch_size``, else None.

    Each loader worker batches its own share of the shards, so every worker ends an epoch on its
    own partial batch. On a large collection that is a few batches in hundreds; on a small one it
    is most of them, and the contrastive losses then see fewer in-batch negatives than configured.
    """
    short = [n for n in sizes if n < batch_size]
    total = sum(sizes)
    if not short or total == 0 or sum(short) / total <= SHORT_BATCH_SHARE:
        return None
    return (f"epoch {epoch}: {len(short)} of {len(sizes)} batches had fewer than loader.batch_size="
            f"{batch_size} clips (mean {sum(short) / len(short):.1f}; {total} clips in the epoch, "
            f"{workers} loader worker(s), each ending on its own partial batch), so steps see fewer "
            "clips (and VTC fewer in-batch negatives) than configured; for a collection this small "
            "lower loader.batch_size or loader.num_workers")


def fail_on_fault(err: BaseException, lr_key: str) -> int:
    """The one ``error:`` line (exit 1) of a training run stopped by a fault that is not a bug:
    a non-finite loss, a shard gone, a full disk. Anything else goes up as a traceback."""
    from pipeline import cli
    from train.trainer import MachineFault, NonFiniteLossError

    if isinstance(err, NonFiniteLossError):  # names the step and the batch keys already
        return cli.fail(f"{err}; the last checkpoint is kept: lower {lr_key} or check those clips", 1)
    if isinstance(err, (MachineFault, OSError)):  # MachineFault names the checkpoint to resume from
        return cli.fail(err, 1)
    raise err


class BatchStream:
    """Endless training batches, epoch after epoch, that can start mid-epoch.

    The loader is deterministic given (seed, epoch), so the position ``(epoch, batch)`` is all
    a checkpoint needs to resume the same stream; the batches before it are skipped. The
    samples the loader skipped as corrupt are counted with the batches they came with, so a
    resumed run counts each once (``skipped``, and the first ``skipped_keys`` as [key, reason]).
    ``samples`` counts the samples it gave (an epoch's last batch may be short), resumes included.
    """

    def __init__(self, loader, *, epoch: int = 0, batch: int = 0, skipped: int = 0,
                 skipped_keys: list | None = None, samples: int = 0) -> None:
        self.loader = loader
        self.epoch, self.batch, self.samples = epoch, batch, samples
        self.skipped, self.skipped_keys = skipped, [list(k) for k in skipped_keys or []]

    def state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "skipped": self.skipped,
                "skipped_keys": [list(k) for k in self.skipped_keys], "samples": self.samples}

    def _count_skips(self, counted: int) -> int:
        """Add the loader's skips since ``counted`` (its per-epoch list); returns the new mark."""
        new = self.loader.stats["skipped_keys"][counted:]
        self.skipped += len(new)
        room = SKIPPED_KEYS_KEPT - len(self.skipped_keys)
        self.skipped_keys += [[str(k), str(r)] for k, r in new[:max(room, 0)]]
        return counted + len(new)

    def __iter__(self) -> Iterator[dict]:
        warned = False
        while True:
            self.loader.set_epoch(self.epoch)
            skip, seen, counted, sizes = self.batch, 0, 0, []
            for b in self.loader:
                seen += 1
                sizes.append(len(b["key"]))
                if seen <= skip:  # consumed before the resume: its skips were counted then
                    counted = len(self.loader.stats["skipped_keys"])
                    continue
                counted = self._count_skips(counted)
                self.batch += 1
                self.samples += len(b["key"])
                yield b
            self._count_skips(counted)
            if seen == 0:
                raise no_batch_error(self.epoch, self.loader.stats["skipped_keys"])
            cfg = getattr(self.loader, "cfg", None)
            if not warned and cfg is not None:
                message = short_batch_warning(self.epoch, sizes, cfg.batch_size, max(cfg.num_workers, 1))
                if message:
                    log.warning(message)
                    warned = True  # once a run: every epoch of a small collection looks the same
            self.epoch, self.batch = self.epoch + 1, 0


def stream_from(trainer, loader, state: dict[str, Any] | None, *, make_stream=None):
    """Resume ``trainer`` from its folder (if ``state``) and wire the data position into its
    checkpoints; returns the stream of batches from where the checkpoint left off.

    ``make_stream(position)`` builds another kind of stream (train/sources.py's MixedStream)
    from the recorded position (None for a new run) instead of a BatchStream over ``loader``.
    """
    position = None
    if state is not None:
        trainer.resume(trainer.ckpt_dir)
        position = rank_share((trainer.resumed_extra or {}).get("data"), trainer.dist.rank)
    if make_stream is not None:
        stream = make_stream(position)
    else:
        stream = BatchStream(loader, **dict(position or {"epoch": 0, "batch": 0}))
    trainer.extra_state = lambda: {"data": stream.state()}
    trainer.extra_over_ranks = lambda extra: {**extra, "data": counts_over_ranks(extra["data"], trainer.dist)}
    return stream


# The counts in a stream's position (BatchStream.state(), nested in MixedStream's): each rank
# counts its own samples and skips, while the rest of a position (epoch, batch, drawn) is the
# same on every rank, which steps in lockstep.
RANK_COUNTS = ("samples", "skipped")


def _count_slots(position: dict) -> list[tuple[dict, str]]:
    """Every count in ``position``, in one order on every rank (the streams' own order)."""
    slots = []
    for key, value in position.items():
        if isinstance(value, dict):
            slots += _count_slots(value)
        elif key in RANK_COUNTS and isinstance(value, int):
            slots.append((position, key))
    return slots


def counts_over_ranks(position: dict | None, dist) -> dict | None:
    """``position`` with its counts summed over the ranks (a collective: every rank calls it).

    A DDP checkpoint records a run's totals so; resuming, rank 0 starts from them and the other
    ranks from 0 (:func:`rank_share`), so the run's final sum counts each clip once even when
    the ranks' epochs end in short batches of different sizes. (Rank 0's own count, recorded
    alone, would be taken up by every rank.)
    """
    import torch

    from train.distributed import all_reduce_sum

    if position is None:
        return None
    position = copy.deepcopy(position)
    slots = _count_slots(position)
    if slots:
        mine = torch.tensor([float(d[k]) for d, k in slots], dtype=torch.float64, device=dist.device)
        for (d, k), total in zip(slots, all_reduce_sum(mine, dist).tolist()):
            d[k] = int(total)
    return position


def rank_share(position: dict | None, rank: int) -> dict | None:
    """This rank's start from a recorded position: the run's counts on rank 0, none elsewhere."""
    if position is None or rank == 0:
        return position
    position = copy.deepcopy(position)
    for d, k in _count_slots(position):
        d[k] = 0
        if k == "skipped" and "skipped_keys" in d:
            d["skipped_keys"] = []  # rank 0 reports the first keys
    return position
