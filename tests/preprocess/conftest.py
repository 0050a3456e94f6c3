"""Small real videos (ffmpeg lavfi test sources, 1 s, 160x120) in every shape preprocessing meets.

Good inputs cover the codecs and containers of real collections (H.264 mp4, VP9 webm, MPEG-4
avi, HEVC mkv, gif), a rotated mov, a variable-frame-rate mp4 and file names with spaces and
non-ASCII characters. Bad inputs cover each class that must end as a ``failed`` stats row.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SRC = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-t", "1"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *args], check=True)


def rotate_mov(src: Path, dst: Path) -> None:
    """Write ``src`` with a 90 degree display matrix in its video track header (tkhd)."""
    data = src.read_bytes()
    ident = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    rot90 = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    at = data.rfind(ident)  # the last matrix is the track's (the first is the movie header's)
    assert at > 0 and at != data.find(ident), "no track matrix found"
    dst.write_bytes(data[:at] + rot90 + data[at + len(ident):])


def make_good_videos(folder: Path) -> dict[str, Path]:
    """stem -> file, all decodable."""
    folder.mkdir(parents=True, exist_ok=True)
    v = {}
    v["h264"] = folder / "h264.mp4"
    ffmpeg(*SRC, "-c:v", "libx264", "-preset", "ultrafast", str(v["h264"]))
    v["vp9"] = folder / "vp9.webm"
    ffmpeg(*SRC, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", str(v["vp9"]))
    v["mpeg4"] = folder / "mpeg4.avi"
    ffmpeg(*SRC, "-c:v", "mpeg4", str(v["mpeg4"]))
    v["hevc"] = folder / "hevc.mkv"
    ffmpeg(*SRC, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", str(v["hevc"]))
    v["anim"] = folder / "anim.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "1", str(v["anim"]))
    plain = folder.parent / "plain.mov"
    ffmpeg(*SRC, "-c:v", "libx264", "-preset", "ultrafast", str(plain))
    v["rotated"] = folder / "rotated.mov"
    rotate_mov(plain, v["rotated"])
    v["vfr"] = folder / "vfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30", "-t", "1", "-vf",
           "setpts='if(lt(N,15),N*0.02,0.3+(N-15)*0.06)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", "-video_track_timescale", "1000", str(v["vfr"]))
    v["clip with spaces é"] = folder / "clip with spaces é.mp4"
    ffmpeg(*SRC, "-c:v", "libx264", "-preset", "ultrafast", str(v["clip with spaces é"]))
    v["видео_日本"] = folder / "видео_日本.webm"
    ffmpeg(*SRC, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", str(v["видео_日本"]))
    v["long"] = folder / "long.mp4"  # cut into windows when max_window_s < 3
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-t", "3", "-c:v", "libx264",
           "-preset", "ultrafast", str(v["long"]))
    return v


# stem -> (the reason's leading words in stats.parquet)
BAD_EXPECT = {
    "missing": "missing file",
    "zero": "empty file",
    "truncated": "truncated or corrupt",
    "notvideo": "not a video file",
    "audioonly": "audio only",
    "nodecode": "no decodable frames",
    "unsupported": "unsupported codec",
    "tiny": "absurd size",
    "short": "too short",
}


def make_bad_videos(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    b = {}
    b["zero"] = folder / "zero.mp4"
    b["zero"].write_bytes(b"")
    whole = folder.parent / "whole.mp4"  # moov at the end: cutting the file loses the index
    ffmpeg(*SRC, "-c:v", "libx264", "-preset", "ultrafast", str(whole))
    data = whole.read_bytes()
    b["truncated"] = folder / "truncated.mp4"
    b["truncated"].write_bytes(data[: len(data) // 2])
    b["notvideo"] = folder / "notvideo.mp4"
    b["notvideo"].write_text("this is a caption file that someone named .mp4\n" * 20)
    b["audioonly"] = folder / "audioonly.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(b["audioonly"]))
    fast = folder.parent / "fast.mp4"  # moov first, then zero the frames: index fine, nothing decodes
    ffmpeg(*SRC, "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", str(fast))
    raw = bytearray(fast.read_bytes())
    mdat = raw.find(b"mdat")
    raw[mdat + 4:] = bytes(len(raw) - mdat - 4)
    b["nodecode"] = folder / "nodecode.mp4"
    b["nodecode"].write_bytes(bytes(raw))
    avi = folder.parent / "fourcc.avi"  # an AVI whose codec tag no decoder knows
    ffmpeg(*SRC, "-c:v", "mpeg4", str(avi))
    b["unsupported"] = folder / "unsupported.avi"
    b["unsupported"].write_bytes(avi.read_bytes().replace(b"FMP4", b"ZQZQ"))
    b["tiny"] = folder / "tiny.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=8x8:rate=15", "-t", "1", "-c:v", "mpeg4", str(b["tiny"]))
    b["short"] = folder / "short.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-t", "0.2", "-c:v", "libx264",
           "-preset", "ultrafast", str(b["short"]))
    return b


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("media")
    videos = root / "videos"
    good = make_good_videos(videos)
    bad = make_bad_videos(videos)
    return {"root": root, "videos": videos, "good": good, "bad": bad, "bad_expect": BAD_EXPECT}


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def tmpfs(tmp_path):
    """Mount tiny tmpfs disks under tmp_path (unmounted after the test)."""
    from tests.preprocess.helpers import Tmpfs

    disks = Tmpfs(tmp_path)
    yield disks
    disks.unmount_all()
