"""One writer at a time: advisory locks on an output folder and on each of its shards.

Two jobs writing one folder used to destroy each other's work (one cleared the other's work
folder as "left by a killed run"). Now:

* the folder lock ``<out>/.lock`` is held by ``python -m preprocess`` for its whole run and by
  the whole-folder steps (:func:`preprocess.api.plan_shards`, :func:`preprocess.api.finalize`);
  a second job is refused with ``<out> is being written by pid N on HOST since ...``;
* a shard lock ``<out>/_work/shard-<i>.lock`` is held while that shard is cleared, transcoded
  and written. SLURM array tasks call :func:`preprocess.api.process_shards` on different
  shards of one folder at once: they take only shard locks, so they do not block each other.

The locks are ``flock``: the kernel releases them when the holder dies, so a crashed or killed
job never leaves a folder stuck (its lock file stays, unlocked, and the next holder reuses it).
A lock file records its holder (pid, host, start time) for the message; it is removed when its
holder finishes. Locks are re-entrant within one process. Where the file system does not
support ``flock`` (some cluster mounts), a warning is printed and the run goes on unlocked.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from preprocess.faults import OutputBusy

FOLDER_LOCK = ".lock"

_held: dict[str, list] = {}  # absolute path -> [fd or None, depth]
_guard = threading.Lock()


@contextlib.contextmanager
def hold(path: Path | str, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` (``what`` names the locked thing in the refusal)."""
    key = os.path.abspath(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
        else:
            _held[key] = [_acquire(Path(key), what), 1]
    try:
        yield
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                _release(Path(key), entry[0])


def hold_folder(out: Path | str) -> contextlib.AbstractContextManager:
    return hold(Path(out) / FOLDER_LOCK, str(out))


def _acquire(path: Path, what: str) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputBusy(f"{what} is being written by {holder}; wait for that job or stop it "
                             "(a crashed job's lock is released by the kernel)") from None
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            print(f"warning: {path.parent} does not support file locks ({err.strerror}); "
                  "nothing stops a second job writing it", file=sys.stderr)
            return None
        # The last holder unlinks the file while it still holds it: if we locked that old
        # inode, the path now names another file (or none), and the lock means nothing.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode())
    return fd


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, KeyError, OSError):
        return "another job (it has not recorded its pid yet)"


def _release(path: Path, fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        path.unlink()  # while still locked, so no one else can be holding this inode
    os.close(fd)
