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
pre-training with them). There the rule is :func:`stage_decision`: a run of the same settings,
data and code (:func:`code_fingerprint`) is resumed, or kept when finished; any other starts
over (moved aside first, :func:`restart_stage_folder`), since DVC reruns a stage because
something it reads changed.
"""

from __future__ import annotations

import contextlib
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


# What a run's code is, for a DVC stage's resume: the trainer's code (every module under train/)
# and the settings code it runs through (pipeline/*.py: config, provenance, cli; not the
# generator's or the launchers' subpackages). The recipes are in the run's identity already.
CODE_FILES = ("train/**/*.py", "pipeline/*.py")


def code_fingerprint(root: str | Path | None = None) -> str:
    """sha256 over the files of :data:`CODE_FILES` (relative path and bytes), 16 hex digits."""
    from pipeline.config import REPO_ROOT

    root = Path(root or REPO_ROOT)
    files = sorted({p for pattern in CODE_FILES for p in root.glob(pattern)
                    if p.is_file() and "__pycache__" not in p.parts})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


CODE_CHANGED = ("the code under train/ or pipeline/*.py changed since it started (to keep its steps anyway, "
                "run the stage's command by hand without --as-stage, then `dvc commit` the stage)")


def stage_decision(state: dict[str, Any], identity: dict[str, Any], code: str,
                   ) -> tuple[Literal["new", "resume", "finished"], str | None]:
    """A DVC stage's rule for the run ``state`` records: ``(what to do, why it starts over)``.

    A run of the same settings, shards and code is resumed, or kept when finished (DVC also reruns
    a stage whose lock entry was never written, e.g. a `dvc repro` killed while it hashed the
    outputs: the training need not run again). Anything else starts over.
    """
    recorded = state.get("identity")
    if recorded is None:
        return "new", "the checkpoint records no configuration or data (written by an older version)"
    diff = differences(recorded, identity)
    if diff:
        return "new", "made with other settings or data: " + "; ".join(diff[:4]) + (
            f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
    if state.get("code") != code:
        return "new", CODE_CHANGED
    return ("finished" if state.get("finished") else "resume"), None


def open_run(folder: str | Path, identity: dict[str, Any], *, fresh: bool, stage_code: str | None = None,
             ) -> tuple[Literal["new", "resume", "finished"], dict[str, Any] | None]:
    """The one rule for an existing run folder (module doc): ``(what to do, its state)``.

    ``stage_code`` (a DVC stage's run: :func:`code_fingerprint`) applies :func:`stage_decision`
    instead: never a mismatch error; the reason for starting over is logged.
    Call it after :func:`train.checkpoint.repair` has undone an interrupted checkpoint write
    (by the one process that writes the folder).
    """
    folder = Path(folder)
    if fresh or checkpoint.find_checkpoint(folder, repair_first=False) is None:
        return "new", None
    if stage_code is not None:
        try:  # a stage cannot be given --fresh: a damaged checkpoint must not block every rerun
            state = checkpoint.read_state(folder)
            checkpoint.check_weights_file(folder)
        except checkpoint.CheckpointError as err:
            log.warning("%s: starting over, not resuming: its checkpoint cannot be read (%s)", folder, err)
            return "new", None
        status, why = stage_decision(state, identity, stage_code)
        if why is not None:
            log.warning("%s: starting over, not resuming (step %s): %s", folder, state.get("step"), why)
            return "new", None
        if status == "resume":
            return "resume", state
        diff = []  # finished, same settings and code: checked below like any finished run
    else:
        state = checkpoint.read_state(folder)
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


def open_stage_run(folder: str | Path, identity: dict[str, Any], *, fresh: bool, as_stage: bool, dist,
                   ) -> tuple[Literal["new", "resume", "finished"], dict[str, Any] | None, str]:
    """:func:`open_run` for a training program: ``(status, state, code)``.

    As a DVC stage, rank 0 decides and every rank follows (a file edited while a multi-rank job
    starts could otherwise split the ranks between resuming and starting over), and a run that
    starts over is moved aside first (:func:`restart_stage_folder`). By hand, every rank applies
    :func:`open_run`'s rule itself, as before.
    """
    from train.distributed import broadcast_object

    if not as_stage:
        code = code_fingerprint()
        status, state = open_run(folder, identity, fresh=fresh)
        return status, state, code
    decided = None
    if dist.is_main:
        code = code_fingerprint()
        decided = (open_run(folder, identity, fresh=fresh, stage_code=code)[0], code)
    status, code = broadcast_object(decided, dist)
    if status == "new":
        restart_stage_folder(folder, dist)
        return "new", None, code
    return status, checkpoint.read_state(folder), code


@contextlib.contextmanager
def one_training_per_folder(folder: str | Path, dist) -> Iterator[None]:
    """Hold ``<parent>/.<name>.lock`` (flock) for a training's whole run: a second training on
    the same run folder stops with one line naming the first (pid, host, start time).

    Two of them (a `dvc repro` killed while its training went on, then rerun) both resumed the
    folder and wrote its checkpoints and curve in turn. The lock sits beside the folder, which
    each checkpoint replaces; the kernel releases it when its holder dies. Rank 0 holds it for
    its job (the ranks of one job share the folder by design).
    """
    if not dist.is_main:
        yield
        return
    from preprocess.lock import hold

    folder = Path(folder)
    with hold(folder.parent / f".{folder.name}.lock", f"{folder}: this run"):
        yield


def code_of_run(state: dict[str, Any] | None, code: str) -> str:
    """The code a checkpoint records: this code for a new run or a resume by the same code; a
    run resumed by hand with other code is marked so, and no DVC stage resumes it."""
    if state is None or state.get("code") == code:
        return code
    return "changed during the run"


def previous_run_folder(folder: str | Path) -> Path:
    """Where a DVC stage that starts over keeps the run it replaces (one, the last)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.previous"


def restart_stage_folder(folder: str | Path, dist) -> None:
    """A DVC stage starting over moves the run folder's old run aside (to
    :func:`previous_run_folder`, replacing the one kept there), so nothing of it is read as this
    run's, as DVC deletes a stage's outputs before running it (the folder is a persisted output),
    and an interrupted run of other code can still be finished by hand. Every rank waits for
    rank 0 to finish."""
    import shutil

    from train.distributed import barrier

    folder = Path(folder)
    if dist.is_main and (folder.exists() or folder.is_symlink()):
        previous = previous_run_folder(folder)
        if previous.is_symlink() or previous.is_file():
            previous.unlink()
        elif previous.exists():
            shutil.rmtree(previous)
        folder.rename(previous)
        log.warning("%s: the run it held is kept in %s until a stage starts over again", folder, previous)
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
    from preprocess.faults import OutputBusy

    if isinstance(err, OutputBusy):  # another training holds the run folder (one_training_per_folder)
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
