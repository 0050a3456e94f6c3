"""Ingest: annotation files + videos -> one manifest (Parquet), one row per sample.

Steps (the heavy ones on dask, so a large collection never has to fit in one process; up to
:data:`IN_MEMORY_MAX_ROWS` rows the same steps run in memory on pandas, sparing dask's start-up):

1. every annotation row is streamed to a temporary row table in chunks, numbered in file order
   (``row``: the input row's identity through to stats.parquet);
2. each row gets its sample key, derived from the video id alone (:func:`sanitise_key`), so
   keys are stable whatever the row order;
3. dask range-partitions rows by key, and each partition groups its rows into samples
   (:func:`group_samples`): captions / questions in row order, duplicate rows and key
   collisions marked failed, the row-level record kept as list columns;
4. dask joins the samples with the files on disk (exact path first, then file stem);
5. samples sorted by key are written in row groups, so later stages read a slice at a time.

Manifest columns: key, video_id, format, split, captions (list), qa (JSON list), source
(relative path), container (folder or tar; relative to the manifest's folder inside a project,
see :func:`stored_container`), offset, size, error (why the whole sample fails,
or null), and the row record rows / origins / row_errors (lists, one entry per input row).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import dask
import pyarrow as pa
import pyarrow.parquet as pq

from preprocess.config import PreprocessConfig
from preprocess.formats import AnnotationError, read_rows
from preprocess.images import IMAGE_FORMATS, IMAGE_SUFFIXES, is_image_path
from preprocess.sources import VIDEO_SUFFIXES, index_sources

ROW_CHUNK = 50_000
# Suffixes of the media a sample can be (videos and images):
# an id ending in one names its file with the extension; other files of a stem are sidecars.
MEDIA_SUFFIXES = VIDEO_SUFFIXES | frozenset(IMAGE_SUFFIXES)
# Formats that list each video once: a second row for the same video is a duplicate key.
# (WebVid lists one caption per row; several rows of one videoid are its captions.)
ONE_ROW_PER_VIDEO = {"msrvtt_1ka", "paragraph"}

ROW_SCHEMA = pa.schema([
    ("row", pa.int64()), ("origin", pa.string()), ("video_id", pa.string()),
    ("want_path", pa.string()), ("caption", pa.string()), ("qa", pa.string()),
    ("split", pa.string()), ("row_error", pa.string()), ("format", pa.string()), ("key", pa.string()),
])

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("video_id", pa.string()), ("format", pa.string()), ("split", pa.string()),
    ("captions", pa.list_(pa.string())), ("qa", pa.string()),
    ("source", pa.string()), ("container", pa.string()), ("offset", pa.int64()), ("size", pa.int64()),
    ("error", pa.string()),
    ("rows", pa.list_(pa.int64())), ("origins", pa.list_(pa.string())), ("row_errors", pa.list_(pa.string())),
])

_UNSAFE = re.compile(r"[^\w\-]+")


def sanitise_key(video_id: str) -> str:
    """A WebDataset key from a video id: no dots, slashes or spaces (they split keys / paths).

    Unicode letters and digits stay (tar stores them); everything else becomes ``_``.
    """
    key = _UNSAFE.sub("_", video_id.strip()).strip("_")
    return key or "_" + hashlib.sha1(video_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# --------------------------------------------------------------------------- rows


def write_rows(annotations: Iterable[Path], fmt: str | None, split: str | None, cfg: PreprocessConfig,
               out: Path) -> str:
    """Stream every annotation row into a Parquet row table; return the format used."""
    annotations = list(annotations)
    writer = pq.ParquetWriter(out, ROW_SCHEMA)
    used = None
    n = 0
    try:
        for path in annotations:
            file_fmt, rows = read_rows(Path(path), fmt, split)
            used = used or file_fmt
            chunk = []
            for r in rows:
                chunk.append(_finish_row(r, n, file_fmt, cfg))
                n += 1
                if len(chunk) >= ROW_CHUNK:
                    writer.write_table(pa.Table.from_pylist(chunk, ROW_SCHEMA))
                    chunk = []
            if chunk:
                writer.write_table(pa.Table.from_pylist(chunk, ROW_SCHEMA))
    finally:
        writer.close()
    # a typo in --split must not pass as an empty collection (an empty file stays an empty one)
    if split and n == 0 and any(True for a in annotations for _ in read_rows(Path(a), fmt, None)[1]):
        raise AnnotationError(f"--split {split!r}: no row of {', '.join(str(a) for a in annotations)} "
                              "is in that split")
    return used or (fmt or "unknown")


_UNDECODABLE = re.compile("[\ud800-\udfff]")  # bytes that were not UTF-8 (surrogateescape), lone escapes
# Fields that may hold such bytes, as people call them; Parquet stores UTF-8 only, so each is
# shown with U+FFFD instead, and its row fails (a video id that is not text names no video).
_TEXT_FIELDS = {"video_id": "video id", "want_path": "video path (page_dir / file name)", "split": "split"}


def _undecodable_to_errors(r: dict) -> dict:
    """The row with every string storable: undecodable text replaced, the row failed for it."""
    r = dict(r)
    for field, label in _TEXT_FIELDS.items():
        value = r[field]
        if isinstance(value, str) and _UNDECODABLE.search(value):
            shown = _UNDECODABLE.sub("\ufffd", value)
            r["row_error"] = r["row_error"] or f"{label} {shown!r} is not valid UTF-8 (undecodable bytes)"
            r[field] = None if field == "video_id" else shown
    if r["qa"] is not None and _UNDECODABLE.search(json.dumps(r["qa"], ensure_ascii=False)):
        r["row_error"] = r["row_error"] or "question record is not valid UTF-8 (undecodable bytes)"
    r["origin"] = _UNDECODABLE.sub("\ufffd", r["origin"])
    if isinstance(r["caption"], str):
        r["caption"] = _UNDECODABLE.sub("\ufffd", r["caption"])
    return r


def _finish_row(r: dict, n: int, fmt: str, cfg: PreprocessConfig) -> dict:
    r = _undecodable_to_errors(r)
    text = r["caption"] if r["qa"] is None else r["qa"].get("question")
    error = r["row_error"]
    if error is None and text is not None and len(text) > cfg.max_caption_chars:
        what = "caption" if r["qa"] is None else "question"
        error = f"{what} too long ({len(text)} characters > max_caption_chars {cfg.max_caption_chars})"
    vid = r["video_id"]
    # Rows that name no video become one-row samples of their own, so they still reach stats.
    key = sanitise_key(vid) if vid else f"_norow{n:09d}"
    return {"row": n, "origin": r["origin"], "video_id": vid, "want_path": r["want_path"],
            "caption": r["caption"], "qa": _qa_json(r["qa"]),
            "split": r["split"], "row_error": error, "format": fmt, "key": key}


def _qa_json(qa: dict | None) -> str | None:
    """The question record as JSON text; undecodable bytes in it (the question is already
    checked by the adapter, answers and options are not) are shown as U+FFFD."""
    return None if qa is None else _UNDECODABLE.sub("\ufffd", json.dumps(qa, ensure_ascii=False))


# --------------------------------------------------------------------------- samples


SAMPLE_COLUMNS = ["key", "video_id", "format", "split", "want_path", "captions", "qa", "error",
                  "rows", "origins", "row_errors"]


def group_samples(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows (all rows of each key in this partition) -> one row per sample, sorted by key.

    Marks failed: later rows that repeat an earlier row's text for the same video, second
    rows of one-row-per-video formats (duplicate keys), and videos whose id sanitises to a
    key another video id already has (the id equal to the key, else the first sorted, wins).
    """
    import pandas as pd

    records = rows.reset_index().sort_values(["key", "row"], kind="stable").to_dict("records")
    out = []
    for key, by_key in itertools.groupby(records, key=lambda r: r["key"]):
        by_vid: dict = {}
        for r in by_key:
            by_vid.setdefault(_none(r["video_id"]), []).append(r)
        vids = sorted(v for v in by_vid if v is not None)
        owner = key if key in vids else (vids[0] if vids else None)
        for vid in sorted(by_vid, key=lambda v: (v is None, v or "")):
            out.append(_one_sample(key, vid, owner, by_vid[vid]))
    out.sort(key=lambda s: s["key"])
    return pd.DataFrame(out, columns=SAMPLE_COLUMNS)


def _one_sample(key: str, vid, owner, group: list[dict]) -> dict:
    captions, qas, errors, seen = [], [], [], {}
    fmt = group[0]["format"]
    collided = vid is not None and vid != owner
    if collided:
        key = f"{key}_{hashlib.sha1(str(vid).encode()).hexdigest()[:8]}"
    for r in group:
        err, caption, qa = _none(r["row_error"]), _none(r["caption"]), _none(r["qa"])
        text = caption if qa is None else qa
        if err is None and fmt in ONE_ROW_PER_VIDEO and seen:
            err = f"duplicate key: video {vid!r} already listed at {next(iter(seen.values()))}"
        elif err is None and text in seen:
            err = f"duplicate row: same video and text as {seen[text]}"
        if err is None:
            seen[text] = r["origin"]
            if qa is not None:
                qas.append(json.loads(qa))
            if caption is not None:  # a caption MC row also carries its right option, a caption of the video
                captions.append(caption)
        errors.append(err)
    error = None
    if vid is None:
        error = errors[0] or "record names no video"
    elif collided:
        error = (f"key collision: video ids {owner!r} and {vid!r} both become key "
                 f"{sanitise_key(str(vid))!r}; rename one")
    elif not captions and not qas:
        error = "no usable caption or question: every row of this video failed"
    splits = [r["split"] for r in group if _none(r["split"]) is not None]
    wants = [r["want_path"] for r in group if _none(r["want_path"]) is not None]
    return {"key": key, "video_id": vid, "format": fmt,
            "split": splits[0] if splits else None, "want_path": wants[0] if wants else None,
            "captions": captions, "qa": json.dumps(qas, ensure_ascii=False) if qas else None,
            "error": error, "rows": [int(r["row"]) for r in group], "origins": [r["origin"] for r in group],
            "row_errors": errors}


def _none(value):
    """Nulls come back from Parquet / shuffles as None or NaN; make them None."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def _sample_meta() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="object") for c in SAMPLE_COLUMNS})


def resolve_files(samples: pd.DataFrame, files: pd.DataFrame, container: str, videos_label: str) -> pd.DataFrame:
    """Attach source/offset/size: the exact relative path if it exists, else the one file whose
    stem is the video's (see :func:`find_file`); a sample whose file is missing or ambiguous fails."""
    by_path = files.set_index("relpath")
    by_stem: dict[str, list[int]] = {}
    for i, stem in enumerate(files["stem"]):
        by_stem.setdefault(unicodedata.normalize("NFC", stem), []).append(i)
    several = "container" in files.columns and files["container"].nunique() > 1
    source, offset, size, error, where = [], [], [], [], []
    for want, vid, err, fmt in zip(samples["want_path"], samples["video_id"], samples["error"], samples["format"]):
        want, vid, err = _none(want), _none(vid), _none(err)
        hit, why = find_file(want, vid, by_path, by_stem, files, images_only=_none(fmt) in IMAGE_FORMATS)
        if hit is None:
            where.append(container)
            source.append(want if isinstance(want, str) else None)
            offset.append(-1)
            size.append(-1)
            if err is None and vid is not None:
                err = why or (f"missing file: no video {want!r} and no file with stem {vid!r} in {videos_label}"
                              if isinstance(want, str) else f"missing file: no file with stem {vid!r} in {videos_label}")
        else:
            f = files.iloc[hit] if isinstance(hit, int) else by_path.loc[hit]
            source.append(f["relpath"] if isinstance(hit, int) else hit)
            where.append(f.get("container", container) if several else container)
            offset.append(int(f["offset"]))
            size.append(int(f["size"]))
        error.append(err)
    out = samples.drop(columns=["want_path"]).copy()
    out["source"], out["offset"], out["size"], out["error"] = source, offset, size, error
    out["container"] = where  # one folder / tar, or per sample when there are several
    return out


def find_file(want, vid, by_path: pd.DataFrame, by_stem: dict[str, list[int]], files: pd.DataFrame,
              images_only: bool | None = None):
    """(hit, why): the exact relative path (``want``, or a video id that is itself a path such as
    ``clip20.mp4``), else the file of that stem (``want``'s, the id, the id without its
    extension; Unicode-normalised, since a copy from macOS spells accents apart). A stem with
    several files is never resolved by a silent pick: a sidecar beside its video (audio,
    subtitles) yields to the video, and anything else fails the sample as ambiguous, naming the
    candidates. ``images_only``: a stem finds only images (an image-caption collection) or only
    non-images (a video one), so a thumbnail never stands in for a video, even a missing one."""
    for path in (want, vid):
        if isinstance(path, str) and path in by_path.index:
            return path, None
    if not isinstance(vid, str):
        return None, None
    stems = [Path(want).stem] if isinstance(want, str) else []
    stems.append(vid)
    if Path(vid).suffix.lower() in MEDIA_SUFFIXES:  # "clip20.mp4"; "clip.2" is an id with a dot
        stems.append(Path(vid).stem)
    for stem in dict.fromkeys(stems):
        found = by_stem.get(unicodedata.normalize("NFC", stem), [])
        if images_only is not None:
            found = [i for i in found if is_image_path(files["relpath"].iat[i]) == images_only]
        if len(found) > 1:
            # a sidecar beside the video (audio, subtitles, a description) yields to the one video
            videos = [i for i in found if Path(files["relpath"].iat[i]).suffix.lower() in MEDIA_SUFFIXES]
            if len(videos) == 1:
                return videos[0], None
            names = ", ".join(files["relpath"].iat[i] for i in found[:5])
            return None, (f"ambiguous file: stem {stem!r} matches {len(found)} files ({names}); "
                          "name the file by its relative path in the annotations, or keep one")
        if found:
            return found[0], None
    return None, None


# --------------------------------------------------------------------------- the manifest


# Collections with up to this many annotation rows are grouped and joined in memory with pandas
# (tens of MB at most): importing dask.dataframe alone costs 1-3 s, most of a small job's
# start-up over the ffmpeg floor. Larger ones go through dask, which never holds them whole.
IN_MEMORY_MAX_ROWS = 200_000


def build_manifest(annotations: Path | str | list, videos: Path | str | list, manifest: Path | str,
                   fmt: str | None = None, split: str | None = None,
                   cfg: PreprocessConfig = PreprocessConfig(), *,
                   in_memory_max_rows: int = IN_MEMORY_MAX_ROWS) -> Path:
    """Write the manifest Parquet for these annotation files and videos; return its path.

    ``manifest`` is the file to write, or a folder (then ``<folder>/manifest.parquet``, where
    :func:`preprocess.api.plan_shards` looks for it by default). Both routes (pandas up to
    ``in_memory_max_rows`` rows, dask above) write the same manifest (tested).
    """
    paths = [Path(a) for a in (annotations if isinstance(annotations, (list, tuple)) else [annotations])]
    # Several folders / tars (e.g. every tar of an img2dataset download): files are found in any.
    sources = [Path(v).resolve() for v in (videos if isinstance(videos, (list, tuple)) else [videos])]
    videos, manifest = sources[0], Path(manifest)
    if manifest.suffix != ".parquet":
        manifest = manifest / "manifest.parquet"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    files = index_sources(sources)
    label = str(videos) if len(sources) == 1 else f"{len(sources)} --videos sources ({sources[0]}, ...)"
    files["container"] = [stored_container(c, manifest.parent) for c in files["container"]]
    stored = stored_container(str(videos), manifest.parent)
    with tempfile.TemporaryDirectory(prefix="ingest-", dir=manifest.parent) as tmp, \
            dask.config.set({"dataframe.convert-string": False, "dataframe.shuffle.method": "tasks",
                             "scheduler": "threads", "num_workers": cfg.num_workers}):
        rows_path = Path(tmp) / "rows.parquet"
        write_rows(paths, fmt, split, cfg, rows_path)
        tmp_manifest = Path(tmp) / "manifest.parquet"
        if pq.ParquetFile(rows_path).metadata.num_rows <= in_memory_max_rows:
            _manifest_in_memory(rows_path, files, stored, label, tmp_manifest, cfg)
            tmp_manifest.replace(manifest)
            return manifest
        import dask.dataframe as dd  # lazily: see IN_MEMORY_MAX_ROWS

        # Range-partition rows by key (all rows of a key land in one partition, partitions in
        # key order), group each partition into samples, join with the files, and spill the
        # result to Parquet in one pass; then stream it into the manifest in key order.
        rows = dd.read_parquet(str(rows_path)).set_index("key", sort=True)
        samples = rows.map_partitions(group_samples, meta=_sample_meta())
        # The file index is broadcast to every partition (a map-side join): it is one small
        # row per file, while the samples are the part that may not fit in memory.
        located = samples.map_partitions(resolve_files, files, stored, label, meta=_located_meta())
        spill = Path(tmp) / "samples"
        located.to_parquet(str(spill), write_index=False, schema=MANIFEST_SCHEMA)
        parts = sorted(spill.glob("*.parquet"), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
        with pq.ParquetWriter(tmp_manifest, MANIFEST_SCHEMA) as writer:
            for part in parts:
                table = pq.read_table(part, schema=MANIFEST_SCHEMA)
                writer.write_table(table.select(MANIFEST_SCHEMA.names), row_group_size=cfg.shard_samples)
        tmp_manifest.replace(manifest)
    return manifest


def _manifest_in_memory(rows_path: Path, files: pd.DataFrame, videos: str, label: str, out: Path,
                        cfg: PreprocessConfig) -> None:
    """The dask route's steps on one in-memory partition: group rows into samples (sorted by
    key), join them with the files, write the manifest."""
    import pandas as pd

    rows = pd.read_parquet(rows_path).set_index("key")
    located = resolve_files(group_samples(rows), files, videos, label)
    table = pa.Table.from_pandas(located[list(MANIFEST_SCHEMA.names)], schema=MANIFEST_SCHEMA, preserve_index=False)
    pq.write_table(table, out, row_group_size=cfg.shard_samples)


def _located_meta() -> pd.DataFrame:
    import pandas as pd

    cols = [c for c in SAMPLE_COLUMNS if c != "want_path"] + ["source", "offset", "size", "container"]
    meta = pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    meta["offset"] = meta["offset"].astype("int64")
    meta["size"] = meta["size"].astype("int64")
    return meta


# --------------------------------------------------------------------------- reading it back


def stored_container(container: str, manifest_dir: Path) -> str:
    """How the manifest names a videos folder / tar: relative to the manifest's folder when both
    lie inside the working directory (a project: the manifest then hashes the same in every
    clone, so ``dvc.lock`` does not change with the clone's path), else absolute."""
    here, container, manifest_dir = Path.cwd().resolve(), Path(container).resolve(), Path(manifest_dir).resolve()
    if container.is_relative_to(here) and manifest_dir.is_relative_to(here):
        return os.path.relpath(container, manifest_dir)
    return str(container)


def container_path(container: str, manifest: Path) -> str:
    """The absolute path of a manifest's ``container`` (see :func:`stored_container`)."""
    if os.path.isabs(container):
        return container
    return os.path.normpath(os.path.join(Path(manifest).resolve().parent, container))


def manifest_rows(manifest: Path) -> int:
    return pq.ParquetFile(manifest).metadata.num_rows


def read_slice(manifest: Path, start: int, stop: int) -> list[dict]:
    """Samples [start, stop) of the manifest, reading only the row groups that hold them."""
    pf = pq.ParquetFile(manifest)
    out, first = [], 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if first < stop and first + n > start:
            rows = pf.read_row_group(g).to_pylist()[max(0, start - first): stop - first]
            for row in rows:
                row["container"] = container_path(row["container"], manifest)
            out.extend(rows)
        first += n
        if first >= stop:
            break
    return out
