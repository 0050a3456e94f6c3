"""Normalise one video into the form GPU decoders handle without surprises.

Every output is H.264 (libx264), yuv420p, constant frame rate ``target_fps``, short side
``short_side`` (even dimensions, square pixels), a keyframe every ``keyint`` frames in closed
GOPs (``-g N -keyint_min N -sc_threshold 0``), no B-frames, the source's rotation applied,
audio dropped unless ``keep_audio``. Videos longer than ``max_window_s`` become several windows
(keys ``<key>_w000``, ``<key>_w001`` ...), all written by one ffmpeg pass (segment muxer,
keyframes forced at the window starts).

Determinism: one ffmpeg thread per transcode and bit-exact flags, so the same source and
settings give byte-identical mp4s. That is also what makes the transcode cache sound: an entry
is keyed by (hash of the source bytes, hash of the settings).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import av

from preprocess.config import PreprocessConfig
from preprocess.faults import MachineFault, machine_words
from preprocess.probe import BadVideo, stderr_tail


def plan_windows(duration: float, cfg: PreprocessConfig) -> list[tuple[float, float] | None]:
    """[None] for a video that fits one window, else (start, length) per window.

    A trailing window shorter than ``min_duration_s`` is dropped (it would be rejected alone).
    """
    if duration <= cfg.max_window_s + 1e-3:
        return [None]
    n = math.ceil(duration / cfg.max_window_s - 1e-6)
    windows = []
    for i in range(n):
        start = i * cfg.max_window_s
        length = min(cfg.max_window_s, duration - start)
        if length >= max(cfg.min_duration_s, 1e-3):
            windows.append((round(start, 3), round(length, 3)))
    return windows


def output_size(probe: dict, cfg: PreprocessConfig) -> tuple[int, int]:
    """(width, height) after rotation, square pixels, short side = ``short_side``, both even."""
    w = probe["width"] * probe.get("sample_aspect_ratio", 1.0)
    h = float(probe["height"])
    if probe.get("rotation", 0) in (90, 270):
        w, h = h, w
    s = cfg.short_side
    if w <= h:
        return s, max(2, int(round(h * s / w / 2)) * 2)
    return max(2, int(round(w * s / h / 2)) * 2), s


def _common_args(src: Path, probe: dict, cfg: PreprocessConfig, start: float | None, length: float | None) -> list[str]:
    """Input, mapping, filters and encoder settings shared by one-file and segmented outputs."""
    w, h = output_size(probe, cfg)
    fps = f"{cfg.target_fps:g}"
    args = [cfg.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1"]
    if start is not None:
        args += ["-ss", f"{start:.3f}"]
    args += ["-i", str(src)]
    if length is not None:
        args += ["-t", f"{length:.3f}"]
    args += ["-map", "0:v:0"]
    if cfg.keep_audio and probe.get("has_audio"):
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-flags:a", "+bitexact"]
    else:
        args += ["-an"]
    # ffmpeg applies the display matrix itself (autorotate) before this filter chain.
    args += [
        "-vf", f"fps={fps},scale={w}:{h}:flags=bicubic,setsar=1,format=yuv420p",
        "-c:v", "libx264", "-preset", cfg.preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p",
        "-g", str(cfg.keyint), "-keyint_min", str(cfg.keyint), "-sc_threshold", "0", "-bf", "0",
        "-x264-params", "open-gop=0", "-threads", "1", "-filter_threads", "1",
        "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact",
    ]
    return args


def transcode_args(src: Path, dst: Path, probe: dict, window: tuple[float, float] | None,
                   cfg: PreprocessConfig) -> list[str]:
    """The ffmpeg argument list (never a shell string) for one output."""
    start, length = window if window is not None else (None, None)
    return _common_args(src, probe, cfg, start, length) + ["-movflags", "+faststart", "-f", "mp4", str(dst)]


def segment_args(src: Path, pattern: Path, probe: dict, windows: list[tuple[float, float]],
                 cfg: PreprocessConfig) -> list[str]:
    """One ffmpeg pass writing every window (``pattern`` holds ``%03d``): the segment muxer cuts
    at the window starts, where keyframes are forced, so each window is a whole closed-GOP mp4
    starting at time 0, as a separate ``-ss``/``-t`` transcode of it would be, for one decode
    of the source instead of one seek-and-decode per window."""
    cuts = ",".join(f"{start:.3f}" for start, _ in windows[1:])
    end = windows[-1][0] + windows[-1][1]  # a dropped short tail is not encoded at all
    args = _common_args(src, probe, cfg, None, end)
    if cuts:
        args += ["-force_key_frames", cuts]
    return args + ["-f", "segment", *(["-segment_times", cuts] if cuts else []), "-reset_timestamps", "1",
                   "-segment_format", "mp4", "-segment_format_options", "movflags=+faststart",
                   "-segment_start_number", "0", str(pattern)]


def count_output(path: Path) -> dict:
    """Facts of a normalised mp4, read from its index (no decoding)."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        if not path.exists():  # our own file vanished: the machine's doing
            raise MachineFault(f"the transcode's output {str(path)!r} vanished") from None
        raise BadVideo(f"truncated or corrupt video: the transcode's output cannot be read ({err})") from None
    with container as c:
        s = c.streams.video[0]
        return {"num_frames": int(s.frames), "width": s.codec_context.width,
                "height": s.codec_context.height, "codec": s.codec_context.name,
                "pix_fmt": s.codec_context.format.name if s.codec_context.format else None}


# At most this many transcodes run at once in this process (None: no limit). The threaded shard
# stage sets it to its worker count and runs one thread more than that, so that while the
# ffmpegs run, the spare thread copies, probes and checks the next video and writes finished
# shards: a worker's own Python work overlaps a transcode instead of following it (on one
# worker it added 12% to the sequential ffmpeg loop on 30-60 s videos), and never more
# transcodes run than there are workers.
_SLOTS: threading.BoundedSemaphore | None = None


@contextlib.contextmanager
def transcode_slots(n: int):
    """Within this block, at most ``n`` ffmpeg transcodes of this process run at once."""
    global _SLOTS
    if n < 1:
        raise ValueError(f"transcode slots must be >= 1, got {n}")
    previous, _SLOTS = _SLOTS, threading.BoundedSemaphore(n)
    try:
        yield
    finally:
        _SLOTS = previous


# ffmpeg's count of the source frames it decoded, from the summary it logs at verbose level:
# "Input stream #0:0 (video): 3 packets read (15974 bytes); 3 frames decoded; ".
_DECODED = re.compile(r"\(video\): [^\n]*?\b(\d+) frames decoded")

# A source with fewer real frames than one per this many seconds is a few pictures spread over
# long timestamp gaps (3 frames at 0, 0.04 and 600 s), not a video. The fps filter fills such
# gaps with copies, so the output's frame count cannot tell; ffmpeg's count of decoded frames
# can. Slideshows and timelapses at a frame every 2-5 s stay well clear of it.
MAX_SECONDS_PER_SOURCE_FRAME = 10.0


@contextlib.contextmanager
def _ffmpeg_report(folder: Path):
    """``(env, path)``: an environment in which ffmpeg also writes its verbose log to ``path``.

    The console stays at ``-loglevel error`` (its stderr words the failures); the report holds the
    decoded-frame count and is removed afterwards. ``(None, None)`` when it cannot be created
    there: ffmpeg then fails on the same folder and says why.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".ffreport-", suffix=".log", dir=folder)
        os.close(fd)
    except OSError:
        name = None
    if name is None:
        yield None, None
        return
    # FFREPORT is a "key=value:..." list with backslash escapes, and "%" codes expand in its file name
    escaped = os.path.abspath(name).replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
    try:
        yield dict(os.environ, FFREPORT=f"file={escaped.replace('%', '%%')}:level=40"), Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _decoded_frames(report: Path | None) -> int | None:
    """Source video frames ffmpeg decoded, from its report; None when it does not say."""
    if report is None:
        return None
    try:
        with open(report, "rb") as f:  # the summary is near the end of a log of a few KB
            f.seek(max(0, f.seek(0, os.SEEK_END) - (256 << 10)))
            counts = _DECODED.findall(f.read().decode("utf-8", "replace"))
    except OSError:
        return None
    return max(map(int, counts)) if counts else None


def _check_source_frames(frames: int | None, span: float) -> None:
    """BadVideo when ffmpeg decoded far too few real frames for the ``span`` seconds it encoded."""
    if frames is not None and frames * MAX_SECONDS_PER_SOURCE_FRAME < span:
        raise BadVideo(f"too few frames: {frames} source frames over {span:.2f} s (fewer than one per "
                       f"{MAX_SECONDS_PER_SOURCE_FRAME:g} s: a few pictures spread over long timestamp gaps)")


def _run_ffmpeg(args: list[str], dst: Path, src: Path, timeout_s: float) -> int | None:
    """Run ffmpeg; raise MachineFault for the machine's errors, BadVideo for the video's.

    Returns the number of source video frames ffmpeg decoded (None when it did not say).
    """
    with _ffmpeg_report(dst.parent) as (env, report):
        try:
            with _SLOTS or contextlib.nullcontext():  # the time limit starts when a slot is free
                proc = subprocess.run(args, capture_output=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise BadVideo(f"transcode timed out after {timeout_s:.0f} s") from None
        frames = _decoded_frames(report)
    _stop_on_machine_fault(proc, dst)
    tail = stderr_tail(proc.stderr, hide=str(src))
    empty = not dst.exists() or dst.stat().st_size == 0
    if proc.returncode != 0 or empty:
        low = tail.lower()
        if "cannot determine format" in low or "output file is empty" in low or "nothing was encoded" in low \
                or (proc.returncode == 0 and empty):
            raise BadVideo(f"no decodable frames (ffmpeg: {tail})")
        raise BadVideo(f"truncated or corrupt video: transcode failed (ffmpeg: {tail})")
    return frames


def _checked_facts(dst: Path, probe: dict, window, cfg: PreprocessConfig) -> dict:
    """The ``video`` facts of one written output, or BadVideo when it is short of what was asked."""
    facts = count_output(dst)
    if facts["num_frames"] == 0:
        raise BadVideo("no decodable frames: the transcode produced no frames")
    expected = window[1] if window is not None else probe["duration"]
    decoded = facts["num_frames"] / cfg.target_fps
    if decoded + 1.0 / cfg.target_fps < cfg.min_decoded_fraction * expected:
        raise BadVideo(f"truncated or corrupt video: decoded {decoded:.2f} s of the {expected:.2f} s "
                       f"the container states")
    if decoded < cfg.min_duration_s and window is None:
        raise BadVideo(f"too short: {decoded:.2f} s of decodable video < min_duration_s {cfg.min_duration_s}")
    return {"fps": cfg.target_fps, "num_frames": facts["num_frames"], "width": facts["width"],
            "height": facts["height"], "duration": round(decoded, 4), "codec": facts["codec"],
            "pix_fmt": facts["pix_fmt"], "keyint": cfg.keyint}


def transcode(src: Path, dst: Path, probe: dict, window, cfg: PreprocessConfig) -> dict:
    """Run one transcode; return the ``video`` facts of the sample JSON, or raise BadVideo."""
    frames = _run_ffmpeg(transcode_args(src, dst, probe, window, cfg), dst, src, cfg.transcode_timeout_s)
    facts = _checked_facts(dst, probe, window, cfg)
    _check_source_frames(frames, window[1] if window is not None else probe["duration"])
    return facts


def transcode_windows(src: Path, out_dir: Path, stem: str, probe: dict, windows: list[tuple[float, float]],
                      cfg: PreprocessConfig) -> list[tuple[Path, dict]]:
    """All windows of one long video in one ffmpeg pass: ``(path, video facts)`` per window.

    Each window is checked as a separate transcode would be (a short or missing one makes the
    whole video a BadVideo, as before); the time limit grows with the number of windows.
    """
    paths = [out_dir / f"{stem}_w{i:03d}.mp4" for i in range(len(windows))]
    # the segment muxer expands "%" codes in its whole output path: a "%" of the folder is escaped
    pattern = Path(str(out_dir).replace("%", "%%")) / f"{stem}_w%03d.mp4"
    args = segment_args(src, pattern, probe, windows, cfg)
    frames = _run_ffmpeg(args, paths[0], src, cfg.transcode_timeout_s * len(windows))
    extra = out_dir / f"{stem}_w{len(windows):03d}.mp4"
    if extra.exists():  # a cut landed off a window start: never ship windows that do not match the plan
        raise BadVideo(f"internal error (segmenting gave more than the {len(windows)} planned windows)")
    for i, path in enumerate(paths):
        if not path.exists() or path.stat().st_size == 0:
            raise BadVideo(f"truncated or corrupt video: window {i} of {len(windows)} was not written "
                           "(the source ends early)")
    written = [(path, _checked_facts(path, probe, window, cfg)) for path, window in zip(paths, windows)]
    # ffmpeg counts the frames of the whole pass, so the source is judged as a whole
    _check_source_frames(frames, windows[-1][0] + windows[-1][1])
    return written


def _stop_on_machine_fault(proc: subprocess.CompletedProcess, dst: Path) -> None:
    """Raise MachineFault when ffmpeg failed because of the machine, not the video.

    ffmpeg exits 255 when a signal stopped it (and the signal's negative when it could not
    catch it), and it may exit 0 after "Error writing trailer ...: No space left on device",
    so its stderr is read whatever the exit status.
    """
    if proc.returncode < 0 or proc.returncode == 255:
        sig = -proc.returncode if proc.returncode < 0 else "TERM/INT"
        raise MachineFault(f"ffmpeg was killed by signal {sig} while writing {str(dst)!r}")
    words = machine_words(proc.stderr.decode("utf-8", "replace"))
    if words:
        raise MachineFault(f"{words}: ffmpeg could not write {str(dst)!r}")
    if not dst.parent.is_dir():
        raise MachineFault(f"No such file or directory: the work folder {str(dst.parent)!r} was removed "
                           "under the running job")


def normalise_video(src: Path, probe: dict, out_dir: Path, stem: str, cfg: PreprocessConfig) -> list[dict]:
    """Transcode every window of one probed source into ``out_dir``; one dict per output.

    Each dict: ``suffix`` ("" or "_w000"...), ``path`` (the mp4), ``video`` facts, ``normalize``
    (what was done: fps, size, rotation applied, audio, window).
    """
    outputs = []
    windows = plan_windows(probe["duration"], cfg)
    if windows == [None]:
        written = [(out_dir / f"{stem}.mp4", transcode(src, out_dir / f"{stem}.mp4", probe, None, cfg))]
    else:
        written = transcode_windows(src, out_dir, stem, probe, windows, cfg)
    for i, (window, (dst, video)) in enumerate(zip(windows, written)):
        suffix = "" if window is None else f"_w{i:03d}"
        outputs.append({
            "suffix": suffix, "path": str(dst), "video": video,
            "normalize": {
                "target_fps": cfg.target_fps, "short_side": cfg.short_side,
                "rotation_applied": probe.get("rotation", 0),
                "audio": "kept" if cfg.keep_audio and probe.get("has_audio") else "dropped",
                "window": None if window is None else {"index": i, "count": len(windows),
                                                       "start": window[0], "length": window[1]},
                "crf": cfg.crf, "preset": cfg.preset,
            },
        })
    return outputs


# --------------------------------------------------------------------------- cache


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Part of the cache key: raised whenever what a source's outputs are, or whether it passes,
# changes without a setting changing (2: the video stream's DURATION tag and the too-few-frames
# check), so entries an older version wrote are not served past the new checks.
CACHE_VERSION = 2


def sweep_stale_temps(cache_dir: str | Path, stale_after_s: float) -> list[Path]:
    """Remove the temp folders (``<aa>/.tmp-*``) that a killed run left in the transcode cache.

    A finished transcode is renamed to its entry, a failed one removed, so a temp folder
    outlives its run only when the run was killed (SIGKILL, a lost node). The cache may be shared
    by runs still going, so only a folder nothing has written to for ``stale_after_s`` goes: a
    live transcode writes its output (or its ffmpeg report) continuously, and no ffmpeg call
    outlives ``transcode_timeout_s``. Returns the folders removed.
    """
    removed, now = [], time.time()
    for tmp in Path(cache_dir).glob("*/.tmp-*"):
        try:
            last = max([tmp.stat().st_mtime] + [f.stat().st_mtime for f in tmp.iterdir()])
        except OSError:  # gone meanwhile (its run finished), or unreadable: not ours to judge
            continue
        if now - last > stale_after_s:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def cached_normalise(src: Path, probe: dict, work_dir: Path, stem: str, cfg: PreprocessConfig) -> list[dict]:
    """:func:`normalise_video` through the cache (same source bytes + settings -> same outputs).

    Without a cache the outputs stay in ``work_dir`` (the shard writer removes them); with one,
    they live in ``cache_dir/<aa>/<hash>/`` written to a temp folder and renamed when whole.
    """
    if not cfg.cache_dir:
        return normalise_video(src, probe, work_dir, stem, cfg)
    digest = hashlib.sha256(f"{file_sha256(src)}:{cfg.normalise_fingerprint()}:{CACHE_VERSION}".encode()).hexdigest()
    entry = Path(cfg.cache_dir) / digest[:2] / digest
    index = entry / "outputs.json"
    if index.exists():
        outputs = json.loads(index.read_text())
        for o in outputs:
            o["path"] = str(entry / o["file"])
        return outputs
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    try:
        outputs = normalise_video(src, probe, tmp, "v", cfg)
        for o in outputs:
            o["file"] = Path(o["path"]).name
        (tmp / "outputs.json").write_text(json.dumps(outputs))
        try:
            os.rename(tmp, entry)
        except OSError:  # another worker finished the same source first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for o in outputs:
        o["path"] = str(entry / o["file"])
    return outputs
