"""Frames -> video file bytes through the ffmpeg command-line tool.

Raw RGB frames go to ffmpeg's stdin (an argument list, never a shell string); the output
is a temporary file because MP4 needs a seekable output for its index. ``-threads 1`` and
the bitexact flags make the bytes depend only on the frames and the ffmpeg build.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class VideoFormat:
    name: str
    ext: str
    container: str  # as PyAV names the demuxer's format family
    codec: str  # as PyAV names the decoder
    args: tuple[str, ...]  # ffmpeg output options


FORMATS: dict[str, VideoFormat] = {
    "mp4": VideoFormat("mp4", "mp4", "mp4", "h264", (
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p")),
    "webm": VideoFormat("webm", "webm", "webm", "vp9", (
        "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "32", "-deadline", "realtime",
        "-cpu-used", "8", "-row-mt", "0", "-pix_fmt", "yuv420p")),
    "avi": VideoFormat("avi", "avi", "avi", "mpeg4", (
        "-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p")),
    # One palette for the whole clip (the shapes use few colours), no dithering noise.
    "gif": VideoFormat("gif", "gif", "gif", "gif", (
        "-filter_complex", "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=none")),
}
DETERMINISM = ("-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1")


class EncodeError(RuntimeError):
    """ffmpeg is missing, failed, or wrote a file that does not hold the frames given."""


def ffmpeg_binary() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise EncodeError("ffmpeg not found on PATH; install it (Debian: apt-get install ffmpeg)")
    return path


def encode(frames: np.ndarray, fps: int, fmt: VideoFormat) -> bytes:
    """Encode [T, H, W, 3] uint8 RGB frames at a constant ``fps``; returns the file's bytes."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise EncodeError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory(prefix="synthetic-enc-") as tmp:
        out = Path(tmp) / f"clip.{fmt.ext}"
        cmd = [
            ffmpeg_binary(), "-nostdin", "-y", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps),
            "-i", "pipe:0", *fmt.args, *DETERMINISM, "-r", str(fps), str(out),
        ]
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise EncodeError(f"ffmpeg failed ({fmt.name}): {proc.stderr.decode(errors='replace').strip()}")
        count = count_packets(out)
        if count != t:
            raise EncodeError(f"{fmt.name}: ffmpeg wrote {count} frames, expected {t}")
        return out.read_bytes()


def count_packets(path: Path) -> int:
    """Video packets in a file (one per frame for these intra/P-only streams), no decoding."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size > 0)
