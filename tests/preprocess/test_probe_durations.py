"""How long a source's video really is, and how many real frames it has.

Matroska / WebM state no per-stream duration, so audio that outlasts the picture made the whole
video look truncated; the stream's ``DURATION`` tag says how long the video is. A file with a few
frames spread over a long timestamp gap was stretched by the fps filter into minutes of one
picture; ffmpeg's count of decoded source frames rejects it, while slideshows and timelapses at
a frame every few seconds stay ok. Truly truncated files still fail as truncated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.config import PreprocessConfig
from preprocess.normalise import normalise_video
from preprocess.probe import BadVideo, probe_source, tag_duration
from tests.preprocess.conftest import ffmpeg

PICTURE = "testsrc2=size=160x120:rate={rate}"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def with_long_audio(dst: Path, video_codec: list[str], audio_codec: list[str], *extra: str) -> Path:
    """3 s of picture at 15 fps and 8 s of sound in one file."""
    ffmpeg("-f", "lavfi", "-t", "3", "-i", PICTURE.format(rate=15), "-f", "lavfi", "-t", "8",
           "-i", "sine=frequency=440", "-map", "0:v", "-map", "1:a", *video_codec, *audio_codec, *extra, str(dst))
    return dst


def cut(src: Path, dst: Path, share: float) -> Path:
    """The first ``share`` of ``src``'s bytes: a download that stopped early."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


def slow(dst: Path, rate: str, seconds: int) -> Path:
    """A source with one real frame per 1/rate seconds (a slideshow, a timelapse)."""
    ffmpeg("-f", "lavfi", "-i", PICTURE.format(rate=rate), "-t", str(seconds), *X264, str(dst))
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("durations")
    opus = ["-c:a", "libopus", "-b:a", "32k"]
    c = {"mkv": with_long_audio(root / "along.mkv", X264, opus),
         "webm": with_long_audio(root / "along.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime",
                                                       "-cpu-used", "8"], opus),
         "mp4": with_long_audio(root / "along.mp4", X264, ["-c:a", "aac"], "-movflags", "+faststart")}
    # the index (moov first, mkv header and tags) still states the whole length; the frames stop early
    c["cut mkv"] = cut(c["mkv"], root / "cut.mkv", 0.25)
    c["cut mp4"] = cut(c["mp4"], root / "cut.mp4", 0.3)
    # three frames, at 0, 0.04 and 60 s (the audit's file had its third at 600 s)
    c["gap"] = root / "gap.mkv"
    ffmpeg("-f", "lavfi", "-i", PICTURE.format(rate=25), "-frames:v", "3", "-vf", "setpts='if(eq(N,2),60/TB,PTS)'",
           "-fps_mode", "vfr", *X264, str(c["gap"]))
    c["1 fps"] = slow(root / "one_fps.mp4", "1", 6)
    c["slideshow 0.5 fps"] = slow(root / "slideshow.mkv", "1/2", 10)
    c["timelapse 1 per 5 s"] = slow(root / "timelapse.mkv", "1/5", 20)
    return c


def normalised(path: Path, folder: Path, **settings) -> tuple[dict, list[dict]]:
    """(probe, outputs) of one source through the real probe and transcode, no cache."""
    cfg = PreprocessConfig(cache_dir=None, **settings)
    probe = probe_source(path, cfg)
    folder.mkdir(parents=True)
    return probe, normalise_video(path, probe, folder, "v", cfg)


def test_duration_tag_reads_clock_readings_and_ignores_the_rest():
    assert tag_duration({"ENCODER": "Lavc", "DURATION": "00:00:03.023000000"}) == pytest.approx(3.023)
    assert tag_duration({"DURATION-eng": "01:02:03.5"}) == pytest.approx(3723.5)  # mkvmerge, with a language
    assert tag_duration({"duration": "02:03.5"}) == pytest.approx(123.5)
    assert tag_duration({"DURATION": " 4.25 "}) == pytest.approx(4.25)
    for junk in ("N/A", "", "-1", "nan", "1e3", "00:00:00.000000000", "3 s"):
        assert tag_duration({"DURATION": junk}) == 0.0, junk
    assert tag_duration({"DURATIONS": "3", "BPS": "1000"}) == 0.0
    assert tag_duration(None) == tag_duration({}) == 0.0


@pytest.mark.parametrize("backend", ["pyav", "ffprobe"])
@pytest.mark.parametrize("kind", ["mkv", "webm", "mp4"])
def test_audio_longer_than_the_video_is_not_truncation(clips, tmp_path, backend, kind):
    probe, outputs = normalised(clips[kind], tmp_path / "out", probe=backend)
    assert probe["duration"] == pytest.approx(3.0, abs=0.05)  # the picture's length, not the sound's 8 s
    assert [o["video"]["num_frames"] for o in outputs] == [30]  # 3 s at target_fps 10


@pytest.mark.parametrize("kind", ["cut mkv", "cut mp4"])
def test_truncated_files_still_fail_as_truncated(clips, tmp_path, kind):
    with pytest.raises(BadVideo) as err:
        normalised(clips[kind], tmp_path / "out")
    assert str(err.value).startswith("truncated or corrupt video"), str(err.value)


# odd folder names: the path of ffmpeg's report must be escaped for FFREPORT, or the count is lost,
# and the segment muxer's output pattern must escape the folder's "%"
@pytest.mark.parametrize("window_s, name", [(100.0, "we:ird %p 'dir'"), (30.0, "we:ird %03d 'dir'")],
                         ids=["one transcode", "windows in one pass"])
def test_a_few_frames_spread_over_a_long_gap_fail(clips, tmp_path, window_s, name):
    folder = tmp_path / name
    with pytest.raises(BadVideo) as err:
        normalised(clips["gap"], folder, max_window_s=window_s)
    assert str(err.value).startswith("too few frames: 3 source frames over 60."), str(err.value)
    assert not list(folder.glob(".ffreport-*")), "ffmpeg's report was left behind"


@pytest.mark.parametrize("kind", ["1 fps", "slideshow 0.5 fps", "timelapse 1 per 5 s"])
def test_low_frame_rate_sources_stay_ok(clips, tmp_path, kind):
    out = tmp_path / "out %d"  # windowed (over 15 s) into a folder with a "%"
    probe, outputs = normalised(clips[kind], out, max_window_s=15.0)
    assert sum(o["video"]["num_frames"] for o in outputs) == pytest.approx(probe["duration"] * 10, abs=10)
    assert not list(out.glob(".ffreport-*"))
