"""Where the source videos are: a folder, or one tar of videos (the synthetic benchmark's form),
or (for images) an img2dataset Parquet whose ``jpg`` column holds the image bytes.

:func:`index_videos` lists every candidate file once (relative path, stem, size, and for a tar
the byte offset of the member's data), so ingest can join annotations with files by path or
stem. :func:`local_copy` gives a worker a real file to hand to ffmpeg: the file itself (refused
if it resolves outside the folder), or the tar member's bytes copied to a temporary file (read
by offset, without re-scanning the tar).
"""

from __future__ import annotations

import errno
import os
import re
import tarfile
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from preprocess.images import index_parquet_images, parquet_image_bytes
from preprocess.probe import BadVideo

# What a video file is called (a folder scan's test; preprocess probes whatever it is given).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif", ".mpg", ".mpeg", ".ts",
                            ".flv", ".wmv", ".ogv", ".3gp"})
# Files that are plainly not videos are not candidates when a stem has several files.
_NOT_VIDEO = {".json", ".txt", ".csv", ".tsv", ".jsonl", ".parquet", ".md", ".srt", ".vtt"}
# Magic bytes of the compressions tarfile would silently undo (offsets then point nowhere).
_COMPRESSED = {b"\x1f\x8b": "a gzip-compressed file", b"BZh": "a bzip2-compressed file",
               b"\xfd7zXZ": "an xz-compressed file", b"\x28\xb5\x2f\xfd": "a zstd-compressed file",
               b"PK\x03\x04": "a zip archive"}
_SURROGATE = re.compile("[\udc80-\udcff]")


class VideosError(ValueError):
    """--videos names something that is neither a folder nor an uncompressed tar: a usage error."""


def is_tar(path: Path) -> bool:
    return path.is_file() and (path.suffix == ".tar" or tarfile.is_tarfile(path))


def index_videos(videos: Path) -> pd.DataFrame:
    """One row per file: relpath, stem, size, offset (tar member data offset, -1 for a folder)."""
    import pandas as pd  # lazily: only ingestion lists the videos; the shard stage starts faster

    videos = Path(videos)
    rows = []
    if not videos.exists():
        raise FileNotFoundError(f"{videos}: videos folder or tar not found")
    if videos.is_file() and videos.suffix == ".parquet":  # img2dataset's images as Parquet bytes
        rows = index_parquet_images(videos)
    elif videos.is_file():
        rows = _index_tar(videos)
    else:
        rows = _index_folder(videos)
    df = pd.DataFrame(rows, columns=["relpath", "size", "offset"])
    df["stem"] = [Path(p).stem for p in df["relpath"]]
    df["suffix"] = [Path(p).suffix.lower() for p in df["relpath"]]
    df = df[~df["suffix"].isin(_NOT_VIDEO)].drop(columns="suffix")
    return df.sort_values("relpath", kind="stable").reset_index(drop=True)


def _index_tar(videos: Path) -> list[tuple[str, int, int]]:
    """An uncompressed tar's members. Only that: a member's bytes are later read at their offset
    in the file, which a compressed tar's offsets (into the decompressed stream) do not give."""
    try:
        with tarfile.open(videos, "r:") as tar:
            # a member appended again (tar -r) replaces the earlier copy, as extracting would
            members = {m.name: (m.name, m.size, m.offset_data) for m in tar if m.isfile()}
    except tarfile.ReadError:
        with open(videos, "rb") as f:
            head = f.read(512)
        kind = next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)
        why = (f"{kind} (unpack it, or make a plain .tar)" if kind else
               "a tar damaged partway (a member's header cannot be read)" if head[257:262] == b"ustar" else
               "not a tar")
        raise VideosError(f"--videos {videos}: {why}; --videos takes a folder or an uncompressed .tar "
                          "of videos (or an img2dataset .parquet)") from None
    undecodable = {name for name in members if _SURROGATE.search(name)}  # tarfile keeps bad bytes as surrogates
    if undecodable:
        _warn_left_out(videos, [f"{_shown(n)} (file name is not UTF-8)" for n in sorted(undecodable)])
    return [row for name, row in members.items() if name not in undecodable]


def _shown(name: str) -> str:
    """A file name whose bytes are not UTF-8, printable: the bad bytes as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _warn_left_out(videos: Path, skipped: list[str]) -> None:
    shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    warnings.warn(f"--videos {videos}: {len(skipped)} file(s) left out: {shown}", stacklevel=4)


def _index_folder(videos: Path) -> list[tuple[str, int, int]]:
    """Every file under the folder. A broken link (dangling, or a loop) or a name that is not
    UTF-8 is left out with a warning rather than stopping the run: an annotation row that names
    it then fails as a missing file, and every other video is processed."""
    rows, skipped = [], []
    for root, dirs, files in os.walk(videos):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, videos)
            if _SURROGATE.search(rel):  # os.walk keeps undecodable bytes as lone surrogates
                skipped.append(f"{_shown(rel)} (file name is not UTF-8)")
                continue
            try:
                rows.append((rel, os.path.getsize(full), -1))
            except OSError as err:
                # only a link that leads nowhere is the input's fault; any other error reading a
                # file (permissions, I/O, a stale NFS handle) is the machine's and stops the run
                if not (os.path.islink(full) and err.errno in (errno.ENOENT, errno.ELOOP)):
                    raise
                skipped.append(f"{rel} (broken link: {err.strerror or err})")
    if skipped:
        _warn_left_out(videos, skipped)
    return rows


def index_sources(sources: list[Path]) -> pd.DataFrame:
    """:func:`index_videos` over several folders / tars (e.g. every tar of an img2dataset
    download), with a ``container`` column; a relative path listed twice keeps its first."""
    import pandas as pd  # lazily, as in index_videos

    frames = []
    for src in sources:
        df = index_videos(src)
        df["container"] = str(Path(src).resolve())
        frames.append(df)
    return pd.concat(frames, ignore_index=True).drop_duplicates("relpath").reset_index(drop=True)


@contextmanager
def local_copy(container: str, relpath: str, offset: int, size: int, tmp_dir: str | None = None) -> Iterator[Path]:
    """A path ffmpeg can open: the folder's file, or the tar member copied to a temp file.

    A folder's file must resolve inside the folder: a link out of it (to another user's data,
    to /etc ...) is refused as :class:`BadVideo`, checked here so a link changed after ingest
    is caught too.
    """
    if offset < 0:
        path = Path(container) / relpath
        real, root = os.path.realpath(path), os.path.realpath(container)
        if os.path.commonpath([real, root]) != root:
            raise BadVideo(f"outside the videos folder: {relpath} is a link to a file outside --videos; refused")
        yield path
        return
    suffix = Path(relpath).suffix
    if Path(container).suffix == ".parquet":  # offset is the row holding the image bytes
        data = parquet_image_bytes(Path(container), offset)
        fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="src-", dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            yield Path(tmp)
        finally:
            os.unlink(tmp)
        return
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="src-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out, open(container, "rb") as src:
            src.seek(offset)
            _copy_n(src, out, size)
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def _copy_n(src, dst, n: int, chunk: int = 1 << 20) -> None:
    left = n
    while left > 0:
        buf = src.read(min(chunk, left))
        if not buf:
            break
        dst.write(buf)
        left -= len(buf)
