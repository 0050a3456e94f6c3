"""Helpers shared by several test folders: the project's params and tiny real H.264 clips.

Imported as ``tests.support`` (tests/conftest.py puts the repository root on sys.path).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from pipeline.config import DEFAULT_PARAMS


def params_dict() -> dict:
    """The repository's params.yaml as plain data (tests write modified copies of it)."""
    return yaml.safe_load(DEFAULT_PARAMS.read_text())


def make_h264_clip(path: Path, pattern: str, seconds: float, *, width: int, height: int,
                   fps: int) -> None:
    """A real H.264 clip from an ffmpeg lavfi test source, in the shape preprocessing writes:
    yuv420p, constant frame rate, a keyframe every second, no B-frames."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"{pattern}=size={width}x{height}:rate={fps}:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", str(fps),
         "-keyint_min", str(fps), "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )


def free_port() -> int:
    """A TCP port nothing listens on now (for a gloo rendezvous between test processes)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
