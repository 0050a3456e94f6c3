"""Where the source videos are: a folder, or one tar of videos (the synthetic benchmark's form),
or (for images) an img2dataset Parquet whose ``jpg`` column holds the image bytes.

:func:`index_videos` lists every candidate file once (relative path, stem, size, and for a tar
the byte offset of the member's data), so ingest can join annotations with files by path or
stem. :func:`local_copy` gives a worker a real file to hand to ffmpeg: the file itself (refused
if it resolves outside the folder), or the tar member's bytes copied to a temporary file (read
by offset, without re-scanning the tar).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from preprocess.images import index_parquet_images, parquet_image_bytes
from preprocess.probe import BadVideo

# Files that are plainly not videos are not candidates when a stem has several files.
_NOT_VIDEO = {".json", ".txt", ".csv", ".tsv", ".jsonl", ".parquet", ".md", ".srt", ".vtt"}


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
        with tarfile.open(videos) as tar:
            for m in tar:
                if m.isfile():
                    rows.append((m.name, m.size, m.offset_data))
    else:
        for root, dirs, files in os.walk(videos):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                rows.append((os.path.relpath(full, videos), os.path.getsize(full), -1))
    df = pd.DataFrame(rows, columns=["relpath", "size", "offset"])
    df["stem"] = [Path(p).stem for p in df["relpath"]]
    df["suffix"] = [Path(p).suffix.lower() for p in df["relpath"]]
    df = df[~df["suffix"].isin(_NOT_VIDEO)].drop(columns="suffix")
    return df.sort_values("relpath", kind="stable").reset_index(drop=True)


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
