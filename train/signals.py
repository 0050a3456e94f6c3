"""Stop signals: the training process owns them from its first instant; loader workers ignore them.

SLURM (time limit, pre-emption, ``scancel --signal``), ``docker stop`` and ``kill -- -PGID``
signal the whole process group, loader workers included. A worker that kept the default action
would die and take the run with it before any checkpoint. So:

* the main process records SIGTERM, SIGUSR1, SIGUSR2, SIGINT and SIGHUP (:data:`STOP`, entered
  at the start of a program's ``main`` and again by the trainer's loop); the loop finishes the
  step in flight, writes a checkpoint and the program exits :data:`EXIT_INTERRUPTED`. A second
  Ctrl-C does not wait for the step: it raises ``KeyboardInterrupt`` at once. A SIGHUP the
  program was started ignoring (``nohup``) stays ignored (:func:`left_to_nohup`);
* after a hang-up the terminal (or the ``| tee`` pipe) the run writes to may be gone: the
  trainer's progress bar goes quiet rather than fail (:func:`train.trainer.on_progress_bar`),
  and at exit stdout and stderr are pointed at /dev/null when they are gone
  (:func:`mute_lost_streams`), so the interpreter's last flush cannot turn exit 75 into 1 or 120;
* whatever ends the process, its loader workers are killed on the way out
  (:func:`kill_workers_at_exit`): they ignore SIGTERM, which is all multiprocessing sends them,
  so a worker blocked on a full pipe kept the exit waiting for ever (a bare Ctrl-C hung so);
* DataLoader workers are started with these signals (and SIGINT) blocked
  (:func:`blocked_in_new_workers`) and set them to ignored before unblocking
  (:func:`ignore_stop_signals`, their ``worker_init_fn``): there is no moment a worker can be
  killed by them. The main process decides, and shuts the workers down itself.

A Python handler already installed for one of these signals belongs to a launcher and is
called after the request is recorded (``pipeline.launch.distributed`` notes submitit's USR2 for
its requeue and forwards it to our SIGUSR1; submitit's own SIGTERM handler only logs).

No torch import here: the launchers import this module before (or without) the trainer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Iterator

EXIT_INTERRUPTED = 75  # sysexits EX_TEMPFAIL: checkpoint written, rerun (requeue) to continue
# SIGINT: a Ctrl-C reaches the whole process group (and `dvc repro`'s stage) and means "stop";
# SIGHUP: the terminal or ssh session the run was started from went away (or `kill -HUP`): its
# default action killed the run, losing the steps since the last checkpoint
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP)
WORKER_IGNORED = STOP_SIGNALS


class StopRequest:
    """Which stop signal arrived, if any. Re-entrant context manager: the outermost ``with``
    installs the handlers (and forgets an earlier request), the matching exit restores them."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._depth = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the person does not want to wait for the step
        if self.signum is None:  # the first one names the stop
            self.signum = signum
        previous = self._previous.get(signum)
        # a launcher's handler (submitit's USR2, our forwarding); a Ctrl-C is the person's, ours
        # alone: Python's KeyboardInterrupt or a library's exit handler would end the run unsaved
        if callable(previous) and signum != signal.SIGINT:
            previous(signum, frame)

    def install(self) -> None:
        """Record stop signals from now on (idempotent; no-op outside the main thread)."""
        kill_workers_at_exit()
        mute_lost_streams_at_exit()
        try:
            for s in STOP_SIGNALS:
                if s not in self._previous and not left_to_nohup(s):
                    self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: no handler, no stop
            self.restore()

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __enter__(self) -> "StopRequest":
        if self._depth == 0:
            if not self._previous:
                self.signum = None
            self.install()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.restore()


STOP = StopRequest()  # one per process: signal handlers are process-wide


def left_to_nohup(signum: int) -> bool:
    """Whether ``signum`` is a SIGHUP this process was started ignoring (``nohup``, a
    ``trap '' HUP``): the person asked the run to outlive its terminal, so it is not a stop."""
    return signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN


@contextlib.contextmanager
def blocked_in_new_workers() -> Iterator[None]:
    """Block the worker-ignored signals while worker processes are forked (they inherit the
    mask); a signal arriving meanwhile is delivered to this process when the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_IGNORED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_stop_signals(worker_id: int | None = None) -> None:  # noqa: ARG001
    """A DataLoader ``worker_init_fn``: ignore the stop signals, then unblock them (pending
    ones are dropped); and die with the main process (:func:`die_with_parent`)."""
    for s in WORKER_IGNORED:
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_IGNORED)
    die_with_parent()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies. A worker ignores the stop signals, so
    a main process killed outright (SIGKILL, the OOM killer) left it alive for ever, holding its
    memory and the files it had open (DVC's log among them). Elsewhere: nothing."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getppid()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: follow it now
            os.kill(os.getpid(), signal.SIGKILL)


def kill_workers_at_exit() -> None:
    """Kill this process's live child processes (loader workers) when it exits, however it
    exits (idempotent). Registered after multiprocessing's own exit hook, so it runs first:
    that hook joins every child without a time limit after a SIGTERM our workers ignore."""
    import atexit
    import multiprocessing
    import multiprocessing.util  # registers its exit hook now, so ours (registered after) runs first

    global _EXIT_HOOK
    if _EXIT_HOOK:
        return

    def kill_children() -> None:
        for child in multiprocessing.active_children():
            with contextlib.suppress(Exception):
                child.kill()
                child.join(5)

    atexit.register(kill_children)
    _EXIT_HOOK = True


_EXIT_HOOK = False


def mute_lost_streams() -> list[str]:
    """Point stdout and stderr at /dev/null where what they wrote to is gone; returns their names.

    After a hang-up the terminal answers every write with EIO; a pipe whose reader died (``| tee``
    closed with the terminal) with EPIPE. What is written there is lost anyway, but a write that
    fails raises, and text still buffered makes the interpreter's last flush fail, which turns
    the exit code of a run that saved its checkpoint (75) into 1 or 120. Gone: poll(2) says the
    other end hung up or left, or a flush fails.
    """
    muted = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # None, closed, or not a file (pytest's capture)
            continue
        if _hung_up(fd) or not _flushes(stream):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
            with contextlib.suppress(OSError, ValueError):
                stream.flush()  # what was still buffered goes there
            muted.append(name)
    return muted


def _hung_up(fd: int) -> bool:
    """poll(2) on ``fd``: a hung-up terminal (POLLHUP) or a pipe or socket with no reader (POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here: the flush decides
        return False


def _flushes(stream) -> bool:
    try:
        stream.flush()
        return True
    except OSError:
        return False
    except ValueError:  # closed: nothing left to flush
        return True


def mute_lost_streams_at_exit() -> None:
    """Run :func:`mute_lost_streams` when this process exits (idempotent): after the program's
    last words, before the interpreter's own flush of stdout and stderr."""
    import atexit

    global _MUTE_HOOK
    if not _MUTE_HOOK:
        atexit.register(mute_lost_streams)
        _MUTE_HOOK = True


_MUTE_HOOK = False


def tell(message: str) -> None:
    """``message`` on stderr, or nowhere when stderr is gone (a hang-up): the stop it reports
    has been saved, and saying so must not end in a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)
