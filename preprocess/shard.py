"""Shards: normalised samples -> WebDataset tars, each with its own stats file.

Shard ``i`` holds manifest samples ``[i * shard_samples, (i + 1) * shard_samples)`` (the
manifest is sorted by key), so the assignment of samples to shards depends only on the input.
Inside a shard, members are sorted by key and every tar header is fixed (mtime 0, uid/gid 0,
mode 0644), so the same input gives byte-identical tars. A shard whose tar would pass
``shard_bytes`` continues in ``shard-<i>-p1.tar``, ``-p2`` ...

A shard is finished when its stats file ``_stats/shard-<i>.parquet`` exists. Every file is
written under a hidden temporary name unique to its process and renamed when whole, stats
last, so a run killed at any moment leaves no half-written visible file, and a rerun redoes
exactly the unfinished shards (it recreates the same bytes). An error of the machine (an
OSError, a killed ffmpeg: :mod:`preprocess.faults`) raises before the stats are written, so it
never turns into failed rows. A shard is cleared and written only under its lock
(:mod:`preprocess.lock`).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import traceback
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from preprocess.config import PreprocessConfig
from preprocess.faults import MachineFault, describe
from preprocess.images import is_image_path, normalise_image
from preprocess.normalise import cached_normalise
from preprocess.probe import BadVideo, probe_source
from preprocess.sources import local_copy

STATS_DIR = "_stats"
WORK_DIR = "_work"

STATS_SCHEMA = pa.schema([
    ("row", pa.int64()), ("origin", pa.string()), ("key", pa.string()), ("video_id", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("shard", pa.string()), ("source", pa.string()),
    ("windows", pa.int32()),
    ("src_codec", pa.string()), ("src_container", pa.string()), ("src_width", pa.int32()),
    ("src_height", pa.int32()), ("src_fps", pa.float64()), ("src_num_frames", pa.int64()),
    ("src_duration", pa.float64()), ("src_rotation", pa.int32()), ("src_bytes", pa.int64()),
    ("out_width", pa.int32()), ("out_height", pa.int32()), ("out_fps", pa.float64()),
    ("out_num_frames", pa.int64()), ("out_duration", pa.float64()), ("out_bytes", pa.int64()),
])


def shard_name(shard_id: int, part: int = 0) -> str:
    return f"shard-{shard_id:06d}" + (f"-p{part}" if part else "")


def stats_path(out: Path, shard_id: int) -> Path:
    return Path(out) / STATS_DIR / f"{shard_name(shard_id)}.parquet"


def shard_done(out: Path, shard_id: int) -> bool:
    return stats_path(out, shard_id).exists()


# --------------------------------------------------------------------------- one sample


def process_sample(sample: dict, work_dir: str, cfg: PreprocessConfig) -> dict:
    """Probe and normalise one manifest sample. Never raises: a bad video is a result too."""
    result = {"key": sample["key"], "error": sample["error"], "probe": None, "outputs": []}
    if sample["error"]:
        return result
    try:
        with local_copy(sample["container"], sample["source"], sample["offset"], sample["size"],
                        tmp_dir=work_dir) as src:
            if is_image_path(sample["source"]):  # a still image: one JPEG frame (preprocess.images)
                result["probe"], result["outputs"] = normalise_image(src, Path(work_dir), sample["key"], cfg)
            else:
                result["probe"] = probe_source(src, cfg)
                result["outputs"] = cached_normalise(src, result["probe"], Path(work_dir), sample["key"], cfg)
    except BadVideo as err:
        result["error"] = str(err)
    except MachineFault as err:
        raise MachineFault(_stopped(err, sample, work_dir)) from None
    except (OSError, MemoryError) as err:  # the machine's fault (preprocess.faults): retry, never record
        raise MachineFault(_stopped(describe(err), sample, work_dir)) from None
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the run
        last = traceback.extract_tb(err.__traceback__)[-1]
        result["error"] = f"internal error ({type(err).__name__}: {err} at {Path(last.filename).name}:{last.lineno})"
    return result


def _stopped(cause, sample: dict, work_dir: str) -> str:
    return (f"{cause} (while processing {sample['source']!r}); {Path(work_dir).name} is left unfinished "
            "and no video was marked failed: fix this and rerun the same command")


def sample_json(sample: dict, result: dict, output: dict) -> dict:
    """The ``<key>.json`` member (schema in docs/design.md)."""
    probe = result["probe"]
    return {
        "key": sample["key"] + output["suffix"],
        "source": sample["source"],
        "format": sample["format"],
        "captions": list(sample["captions"] or []),
        "qa": json.loads(sample["qa"]) if sample["qa"] else [],
        "split": sample["split"],
        "media": "image" if output["path"].endswith(".jpg") else "video",
        "video": output["video"],
        "source_probe": {k: probe[k] for k in ("codec", "container", "fps", "num_frames", "width",
                                               "height", "duration", "rotation")},
        "normalize": output["normalize"],
        "extra": {"video_id": sample["video_id"], "rows": list(sample["rows"]),
                  "source_bytes": probe["bytes"], "source_pix_fmt": probe["pix_fmt"],
                  "variable_frame_rate": probe["variable_frame_rate"], "has_audio": probe["has_audio"]},
    }


# --------------------------------------------------------------------------- one shard


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(path: Path, members: list[tuple[str, bytes | str]]) -> None:
    """members: (name, bytes) or (name, path of a file); written in the given order."""
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            if isinstance(data, bytes):
                tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
            else:
                with open(data, "rb") as src:
                    tar.addfile(_tar_info(name, os.path.getsize(data)), src)
        f.flush()
        os.fsync(f.fileno())


def clear_unfinished(out: Path, shard_id: int) -> None:
    """Remove what a killed run of this shard left: temp files and its work folder."""
    prefix = f".{shard_name(shard_id)}"
    for p in list(Path(out).glob(prefix + "*")) + list((Path(out) / STATS_DIR).glob(prefix + "*")):
        p.unlink(missing_ok=True)
    shutil.rmtree(Path(out) / WORK_DIR / shard_name(shard_id), ignore_errors=True)


def write_shard(out: Path, shard_id: int, samples: list[dict], results: list[dict], cfg: PreprocessConfig,
                window_like_keys: frozenset = frozenset()) -> dict:
    """Write shard ``shard_id``'s tar(s) and stats from its samples' results; return counts.

    ``window_like_keys``: the manifest's keys that look like a window (:func:`manifest_window_keys`),
    so a video whose windows would take one of them fails whichever shard that key fell in.
    An OSError here (a full or vanished output, a transcode removed under us) is the machine's
    fault: no stats are written, so the shard stays unfinished and the rerun redoes it.
    """
    out = Path(out)
    try:
        counts = _write_shard(out, shard_id, samples, results, cfg, window_like_keys)
    except (OSError, MemoryError) as err:
        raise MachineFault(f"{describe(err)} (while writing {shard_name(shard_id)} in {str(out)!r}); the "
                           "shard is left unfinished: fix this and rerun the same command") from None
    shutil.rmtree(out / WORK_DIR / shard_name(shard_id), ignore_errors=True)
    return counts


# The key of a video's window (preprocess/normalise.py: "<key>_w000", "<key>_w001" ...).
WINDOW_KEY = re.compile(r"_w\d{3,}$")


def manifest_window_keys(manifest: Path) -> frozenset:
    """The keys of the manifest's usable samples that have a window's form (``clip_w001``).

    Shards are written apart (by other workers, other SLURM tasks), so whether a long video's
    windows collide with another video's key cannot be seen from one shard: this set, read from
    the whole manifest once, is what each shard checks its windows against.
    """
    table = pq.read_table(manifest, columns=["key", "error"])
    return frozenset(k for k, e in zip(table.column("key").to_pylist(), table.column("error").to_pylist())
                     if e is None and WINDOW_KEY.search(k))


def _fail_window_collisions(samples: list[dict], results: list[dict], window_like_keys: frozenset) -> None:
    """A video cut into windows (``clip`` into ``clip_w000``, ``clip_w001``) beside a video whose
    key is one of those window keys (``clip_w001``) would put two samples of one key in the
    shards; the loader would yield either, and evaluation would keep one. The windowed video
    fails as a key collision instead, the same one whichever shards the two fell in (a shard
    cannot know another shard's durations, but it knows the manifest's keys)."""
    taken = set(window_like_keys) | {s["key"] for s, r in zip(samples, results) if not r["error"]}
    for sample, result in zip(samples, results):
        if result["error"]:
            continue
        windows = [sample["key"] + o["suffix"] for o in result["outputs"] if o["suffix"]]
        clash = next((w for w in windows if w in taken and w != sample["key"]), None)
        if clash is not None:
            result["error"] = (f"key collision: this video is cut into windows ({len(windows)} of at most "
                               f"preprocess.max_window_s) and its window {clash!r} is the key of another video; "
                               "rename one")


def _write_shard(out: Path, shard_id: int, samples: list[dict], results: list[dict], cfg: PreprocessConfig,
                 window_like_keys: frozenset = frozenset()) -> dict:
    _fail_window_collisions(samples, results, window_like_keys)
    members: list[tuple[str, list[tuple[str, bytes | str]], int]] = []  # (key, members, bytes)
    for sample, result in zip(samples, results):
        for o in result["outputs"] if not result["error"] else []:
            meta = json.dumps(sample_json(sample, result, o), ensure_ascii=False, sort_keys=True).encode()
            key = sample["key"] + o["suffix"]
            ext = Path(o["path"]).suffix  # .mp4, or .jpg for an image (preprocess.images)
            members.append((key, [(f"{key}.json", meta), (f"{key}{ext}", o["path"])],
                            len(meta) + os.path.getsize(o["path"])))
    members.sort(key=lambda m: m[0])

    parts: list[list] = [[]]
    size = 0
    for key, files, nbytes in members:
        if parts[-1] and size + nbytes > cfg.shard_bytes:
            parts.append([])
            size = 0
        parts[-1].append((key, files))
        size += nbytes + 1024 * len(files)  # tar headers and padding
    part_of = {key: shard_name(shard_id, p) + ".tar" for p, part in enumerate(parts) for key, _ in part}

    written = _write_files(out, shard_id, parts, _stats_rows(samples, results, part_of))
    ok = sum(1 for r in results if not r["error"])
    return {"shard": shard_id, "samples": len(samples), "ok": ok, "failed": len(samples) - ok,
            "outputs": len(members), "parts": written}


def temp_name(final: Path) -> Path:
    """A hidden name next to ``final``, unique to this process (two writers never share one)."""
    return final.parent / f".{final.name}.{os.getpid()}.tmp"


def _write_files(out: Path, shard_id: int, parts: list[list], stats_rows: list[dict]) -> int:
    """Tars under temporary names, renamed when all are whole; then the stats, the shard's
    "finished" mark. On failure the temporary files are removed (a full disk gets its space back)."""
    written, temps = [], []
    try:
        for p, part in enumerate(parts):
            if not part:  # a shard whose samples all failed has no tar, only its stats
                continue
            final = out / f"{shard_name(shard_id, p)}.tar"
            temps.append(temp_name(final))
            _write_tar(temps[-1], [m for _, files in part for m in files])
            written.append((temps[-1], final))
        for tmp, final in written:
            os.replace(tmp, final)
        final_stats = stats_path(out, shard_id)
        final_stats.parent.mkdir(parents=True, exist_ok=True)
        temps.append(temp_name(final_stats))
        pq.write_table(pa.Table.from_pylist(stats_rows, STATS_SCHEMA), temps[-1])
        os.replace(temps[-1], final_stats)
    finally:
        for tmp in temps:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    return len(written)


def _stats_rows(samples: list[dict], results: list[dict], part_of: dict[str, str]) -> list[dict]:
    """One stats row per input row of every sample in the shard."""
    rows = []
    for sample, result in zip(samples, results):
        probe, outputs = result["probe"] or {}, result["outputs"] if not result["error"] else []
        facts = {
            "src_codec": probe.get("codec"), "src_container": probe.get("container"),
            "src_width": probe.get("width"), "src_height": probe.get("height"),
            "src_fps": probe.get("fps"), "src_num_frames": probe.get("num_frames"),
            "src_duration": probe.get("duration"), "src_rotation": probe.get("rotation"),
            "src_bytes": probe.get("bytes"), "windows": len(outputs),
        }
        if outputs:
            v = outputs[0]["video"]
            facts.update(out_width=v["width"], out_height=v["height"], out_fps=v["fps"],
                         out_num_frames=sum(o["video"]["num_frames"] for o in outputs),
                         out_duration=round(sum(o["video"]["duration"] for o in outputs), 4),
                         out_bytes=sum(os.path.getsize(o["path"]) for o in outputs))
        shard = part_of.get(sample["key"] + outputs[0]["suffix"]) if outputs else None
        for row, origin, row_error in zip(sample["rows"], sample["origins"], sample["row_errors"]):
            error = row_error or result["error"]
            rows.append({"row": row, "origin": origin, "key": sample["key"], "video_id": sample["video_id"],
                         "status": "failed" if error else "ok", "error": error,
                         "shard": None if error else shard, "source": sample["source"], **facts})
    return rows
