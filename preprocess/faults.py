"""Whose fault is it: the video's, or the machine's?

A video that cannot become a sample is data: :class:`preprocess.probe.BadVideo` becomes a
``failed`` row with the reason, and the run goes on. An error of the environment says nothing
about the video -- a full disk or quota, a read-only or vanished folder, a refused permission,
an ffmpeg killed by a signal, memory running out -- and recording it as a failed row would make
it permanent, because a shard with a stats file is never redone. Such an error is a
:class:`MachineFault`: it stops the shard before its stats are written, so the rerun retries
every video of it, and the command exits non-zero with one ``error:`` line.

The rule: every ``OSError`` or ``MemoryError`` that reaches the per-sample code is the machine's
(problems with the input's bytes are reported by ffmpeg / PyAV as text, which the probe and the
transcode turn into BadVideo), and so is a child process that died of a signal or said one of
:data:`MACHINE_WORDS`.
"""

from __future__ import annotations


class StopRun(RuntimeError):
    """A condition a person must fix; the CLI prints it as one ``error:`` line and exits non-zero."""


class MachineFault(StopRun):
    """An error of the environment, not of the video: the shard is left unfinished."""


class OutputBusy(StopRun):
    """Another job is writing the same output folder (or shard)."""


# ffmpeg's words for errno values that are about the machine (it prints strerror, and may even
# exit 0 after "Error writing trailer ...: No space left on device").
MACHINE_WORDS = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                 "Permission denied", "Operation not permitted", "Stale file handle",
                 "Too many open files")


def machine_words(stderr: str) -> str | None:
    """The first machine-fault phrase in a child's stderr, if any."""
    return next((w for w in MACHINE_WORDS if w in stderr), None)


def describe(err: BaseException) -> str:
    """``No space left on device: '/cache/ab/.tmp-x'`` -- the cause a person acts on, one line."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        return f"{err.strerror}" + (f": {where!r}" if where else "")
    if isinstance(err, MemoryError):
        return "out of memory"
    return " ".join(f"{type(err).__name__}: {err}".split())
