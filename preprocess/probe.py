"""Probe a source video with ffprobe and turn every way it can be bad into a readable reason.

:func:`probe_source` returns the facts the sample JSON records under ``source_probe`` or raises
:class:`BadVideo` whose message says what is wrong in words a person can act on ("not a video
file", "truncated or corrupt", "no video stream (audio only)", ...).
"""

from __future__ import annotations

import functools
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg

from preprocess.config import PreprocessConfig


_INVALID_SIZE = re.compile(r"Picture size (\d+)x(\d+) is invalid")


class BadVideo(Exception):
    """This video cannot become a sample; the message is the reason recorded in stats."""


def container_signature(head: bytes) -> str | None:
    """The video container a file's first bytes announce, if any.

    ffprobe's error for a cut-off mp4 and for a text file named .mp4 is the same ("moov atom
    not found"), so the file's own magic bytes tell "truncated or corrupt" from "not a video".
    """
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4/mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska/webm"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75"):
        return "asf/wmv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "mpeg-ts"
    return None


_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+")


def stderr_tail(stderr: bytes | str | None, lines: int = 2, hide: str | None = None) -> str:
    """The last lines of a tool's stderr, without the (temporary) file path."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    if hide:
        text = text.replace(hide + ": ", "").replace(hide, "<file>")
    # "[mov,mp4 @ 0x5629...]": a heap address differs from run to run, and stats.parquet must not
    text = _ADDRESS.sub("", text)
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])[:300]


@functools.lru_cache(maxsize=4)
def known_decoders(ffmpeg_bin: str = "ffmpeg") -> frozenset[str]:
    """Codec names the installed ffmpeg can decode (from ``ffmpeg -decoders``)."""
    out = subprocess.run([ffmpeg_bin, "-hide_banner", "-decoders"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _rotation(stream: dict) -> int:
    """Clockwise degrees the player must rotate the picture (display matrix or rotate tag)."""
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(-float(side["rotation"]))) % 360
    tag = (stream.get("tags") or {}).get("rotate")
    return int(tag) % 360 if tag and tag.lstrip("-").isdigit() else 0


_CLOCK = re.compile(r"(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)")


def tag_duration(tags: dict | None) -> float:
    """Seconds in a stream's ``DURATION`` tag (``00:00:03.023000000``), 0.0 when there is none.

    Matroska / WebM have no per-stream duration, so the container's is the longest stream's:
    with audio that outlasts the picture, it would make a whole video look truncated. Their
    muxers (FFmpeg, mkvmerge) write each stream's own length in this tag instead; mkvmerge's may
    carry a language (``DURATION-eng``). Anything that is not a plain clock reading is ignored.
    """
    for key, value in (tags or {}).items():
        if str(key).upper().split("-")[0] != "DURATION":
            continue
        match = _CLOCK.fullmatch(str(value).strip())
        if match:
            hours, minutes, seconds = match.groups()
            if minutes is None:  # "MM:SS.s" fills the first group only
                hours, minutes = None, hours
            # exact sum, so a tag equal to the container's length gives the very same float
            total = float(int(hours or 0) * 3600 + int(minutes or 0) * 60 + Fraction(seconds))
            if total > 0:
                return total
    return 0.0


def _stream_duration(own, tags: dict | None, container) -> float:
    """The video stream's length: its own, else its ``DURATION`` tag, else the container's.

    A tag longer than the container is stale or wrong (no stream outlasts its file), so the
    container's length caps it.
    """
    tagged = tag_duration(tags)
    limit = _first_positive(container)
    if tagged and limit:
        tagged = min(tagged, limit)
    return _first_positive(own, tagged, container)


def check_source_file(path: Path, cfg: PreprocessConfig, kind: str) -> int:
    """The source file's size in bytes, or :class:`BadVideo` when it is missing, empty or over
    ``max_bytes`` (checked before any decoder opens it; ``kind``: "video" or "image")."""
    if not path.exists():
        raise BadVideo(f"missing file: {path.name} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise BadVideo(f"empty file: the {kind} file has 0 bytes")
    if size > cfg.max_bytes:
        raise BadVideo(f"absurd size: file is {size} bytes > max_bytes {cfg.max_bytes}")
    return size


def probe_source(path: Path, cfg: PreprocessConfig) -> dict:
    """Facts of the video's first video stream; :class:`BadVideo` if it is unusable.

    ``cfg.probe`` picks how: ``pyav`` opens the file in this process and decodes its first
    frame (a few ms; an ffprobe process costs 0.1-0.4 s to start, as much as transcoding a
    short clip), falling back to ffprobe to explain a file it cannot open; ``ffprobe`` runs
    ``ffmpeg.probe`` for every file.
    """
    path = Path(path)
    size = check_source_file(path, cfg, "video")
    facts = None
    if cfg.probe == "pyav":
        facts = _facts_pyav(path)
    if facts is None:
        facts = _facts_ffprobe(path, cfg)
    return _check(facts, size, cfg)


def _facts_ffprobe(path: Path, cfg: PreprocessConfig) -> dict:
    try:
        info = ffmpeg.probe(str(path), cmd=cfg.ffprobe)
    except ffmpeg.Error as err:
        detail = stderr_tail(err.stderr, 2, hide=str(path))
        # FFmpeg refuses to allocate a frame past its size limit before any stream is listed, so
        # an absurd frame size would otherwise read as "not a video file".
        size = _INVALID_SIZE.search(err.stderr.decode("utf-8", "replace") if err.stderr else "")
        if size:
            raise BadVideo(f"absurd size: {size[1]}x{size[2]} is outside [min_side {cfg.min_side}, max_side "
                           f"{cfg.max_side}] (FFmpeg cannot even allocate such a frame)") from None
        with open(path, "rb") as f:
            kind = container_signature(f.read(256))
        if kind:
            raise BadVideo(f"truncated or corrupt video: a {kind} file ffprobe cannot read ({detail})") from None
        raise BadVideo(f"not a video file: neither ffprobe nor its first bytes name a video format ({detail})") from None
    streams = info.get("streams", [])
    fmt = info.get("format", {})
    video = [s for s in streams if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    facts = {"kinds": sorted({s.get("codec_type", "?") for s in streams}),
             "container": (fmt.get("format_name") or "").split(",")[0]}
    if video:
        v = video[0]
        nb = v.get("nb_frames")
        facts.update(
            codec=v.get("codec_name"), tag=v.get("codec_tag_string"),
            width=int(v.get("width") or 0), height=int(v.get("height") or 0),
            duration=_stream_duration(v.get("duration"), v.get("tags"), fmt.get("duration")),
            fps=_rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate")),
            nb_frames=int(nb) if nb and str(nb).isdigit() else None,
            rotation=_rotation(v), pix_fmt=v.get("pix_fmt"),
            sar=_rate(v.get("sample_aspect_ratio", "1").replace(":", "/")) or 1.0,
            vfr=v.get("avg_frame_rate") != v.get("r_frame_rate"),
            decodable=None)  # ffprobe does not decode; the transcode finds out
    return facts


def _facts_pyav(path: Path) -> dict | None:
    """Facts through PyAV, or None when PyAV cannot open the file (ffprobe then explains why)."""
    try:
        container = av.open(str(path))
    except Exception:  # noqa: BLE001 - any failure to open: let ffprobe diagnose it
        return None
    with container:
        streams = container.streams
        video = [s for s in streams.video
                 if not (s.disposition & av.stream.Disposition.attached_pic)]
        facts = {"kinds": sorted({s.type for s in streams}),
                 "container": container.format.name.split(",")[0]}
        if not video:
            return facts
        v = video[0]
        cc = v.codec_context
        if cc is None:  # no decoder in PyAV's FFmpeg: let ffprobe name the codec / tag
            return None
        own = float(v.duration * v.time_base) if v.duration and v.time_base else 0.0
        duration = _stream_duration(own, v.metadata, (container.duration or 0) / av.time_base)
        avg, base = v.average_rate, v.base_rate
        facts.update(
            codec=cc.name, tag=None, width=cc.width, height=cc.height,
            duration=duration, fps=float(avg or v.guessed_rate or base or 0),
            nb_frames=v.frames or None, rotation=0, pix_fmt=cc.format.name if cc.format else None,
            sar=float(v.sample_aspect_ratio or 1) or 1.0, vfr=bool(avg and base and avg != base),
            decodable=False)
        try:  # the first frame: is anything decodable, and how is it to be rotated?
            for frame in container.decode(v):
                facts["rotation"] = int(round(-float(getattr(frame, "rotation", 0) or 0))) % 360
                facts["decodable"] = True
                break
        except Exception:  # noqa: BLE001 - a decoding error here means nothing decodes
            pass
    return facts


def _check(f: dict, size: int, cfg: PreprocessConfig) -> dict:
    """Turn raw facts into the ``source_probe`` record, or reject the video with the reason."""
    if "codec" not in f:
        if "audio" in f["kinds"]:
            raise BadVideo("audio only: the file has no video stream")
        raise BadVideo(f"not a video: no video stream (streams: {', '.join(f['kinds']) or 'none'})")
    codec = f["codec"]
    if not codec or codec not in known_decoders(cfg.ffmpeg):
        raise BadVideo(f"unsupported codec: {codec or 'unknown'} (tag {f.get('tag') or '?'!r}) "
                       "has no decoder in this ffmpeg")
    width, height = f["width"], f["height"]
    if not (cfg.min_side <= min(width, height) and max(width, height) <= cfg.max_side):
        raise BadVideo(f"absurd size: {width}x{height} is outside [min_side {cfg.min_side}, "
                       f"max_side {cfg.max_side}]")
    duration, fps = f["duration"], f["fps"]
    if duration <= 0:
        raise BadVideo("no duration: the container states no length (truncated or a still image?)")
    if duration > cfg.max_duration_s:
        raise BadVideo(f"absurd duration: {duration:.0f} s > max_duration_s {cfg.max_duration_s:.0f}")
    if duration < cfg.min_duration_s:
        raise BadVideo(f"too short: {duration:.2f} s < min_duration_s {cfg.min_duration_s}")
    if f["decodable"] is False:
        raise BadVideo(f"no decodable frames: the {codec} stream has no frame that decodes")
    return {
        "codec": codec,
        "container": f["container"],
        "fps": round(fps, 4),
        "num_frames": f["nb_frames"] or int(round(duration * fps)),
        "width": width,
        "height": height,
        "duration": round(duration, 4),
        "rotation": f["rotation"],
        "pix_fmt": f["pix_fmt"],
        "sample_aspect_ratio": round(f["sar"], 4),
        "variable_frame_rate": f["vfr"],
        "has_audio": "audio" in f["kinds"],
        "bytes": size,
    }


def _first_positive(*values) -> float:
    for value in values:
        try:
            f = float(value)
        except (TypeError, ValueError):
            continue
        if f > 0:
            return f
    return 0.0
