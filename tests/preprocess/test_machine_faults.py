"""The machine's faults never become failed rows: the run stops, says why, and the rerun finishes.

Each case is real: a 64 KiB tmpfs as the transcode cache or as the output, a read-only cache,
an ffmpeg killed by SIGKILL, a work folder removed under the running job. Each run must exit
non-zero with one ``error:`` line and leave its unfinished shards without stats; the rerun with
the fault gone must give every good video ``ok`` (and the one bad video its own reason).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.config import PreprocessConfig
from preprocess.faults import MachineFault
from preprocess.shard import process_sample
from tests.preprocess.helpers import assert_error_line, clip_set, params_file, run_cli

GOOD = ["h264", "vp9", "long", "anim"]


@pytest.fixture(scope="module")
def data(media, tmp_path_factory):
    videos, ann = clip_set(media, GOOD, tmp_path_factory.mktemp("faults"), bad=("notvideo",))
    return {"videos": videos, "ann": ann}


def fake_ffmpeg(folder: Path, body: str) -> str:
    """An ffmpeg that does ``body`` before (or instead of) transcoding; ``-decoders`` still works."""
    path = folder / "ffmpeg"
    path.write_text('#!/bin/bash\ncase "$*" in *-decoders*) exec ffmpeg "$@";; esac\n' + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def run(data, out: Path, params: Path, manifest: Path | None = None, check: bool = False):
    extra = ["--manifest", str(manifest)] if manifest else []
    return run_cli("--annotations", str(data["ann"]), "--videos", str(data["videos"]), "--out", str(out),
                   "--params", str(params), "--workers", "1", "--shard-size", "1", *extra, check=check)


def shard_rows(out: Path) -> list[dict]:
    return [r for p in sorted((out / "_stats").glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]


def assert_stopped_without_blame(proc, out: Path, *words: str) -> None:
    assert_error_line(proc, *words)
    assert not (out / "stats.parquet").exists()
    blamed = [r for r in shard_rows(out) if r["status"] == "failed" and r["video_id"] != "notvideo"]
    assert not blamed, blamed
    assert len(shard_rows(out)) < len(GOOD) + 1, "every shard finished: the fault never struck"


def assert_rerun_finishes(proc, out: Path) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = pq.read_table(out / "stats.parquet").to_pylist()
    assert len(stats) == len(GOOD) + 1
    assert {r["video_id"]: r["status"] for r in stats} == {**{s: "ok" for s in GOOD}, "notvideo": "failed"}
    assert [r["error"] for r in stats if r["status"] == "failed"][0].startswith("not a video file")


def test_full_cache_disk_stops_the_run_and_the_rerun_finishes(data, tmpfs, tmp_path):
    cache = tmpfs.mount("cache", "64k")
    params = params_file(tmp_path, cache_dir=str(cache))
    out = tmp_path / "out"
    assert_stopped_without_blame(run(data, out, params), out, "No space left on device")
    tmpfs.resize(cache, "256m")
    assert_rerun_finishes(run(data, out, params), out)


def test_full_output_disk_stops_the_run_and_the_rerun_finishes(data, tmpfs, tmp_path):
    out = tmpfs.mount("out", "64k")
    params = params_file(tmp_path, cache_dir=None)
    manifest = tmp_path / "manifest.parquet"
    assert_stopped_without_blame(run(data, out, params, manifest), out, "No space left on device")
    tmpfs.resize(out, "256m")
    assert_rerun_finishes(run(data, out, params, manifest), out)


def test_read_only_cache_stops_the_run(data, tmpfs, tmp_path):
    cache = tmpfs.mount("cache", "1m", read_only=True)
    params = params_file(tmp_path, cache_dir=str(cache))
    out = tmp_path / "out"
    assert_stopped_without_blame(run(data, out, params), out, "Read-only file system")
    tmpfs.resize(cache, "256m")
    assert_rerun_finishes(run(data, out, params), out)


def test_killed_ffmpeg_stops_the_run(data, tmp_path):
    out = tmp_path / "out"
    killed = params_file(tmp_path, cache_dir=None, ffmpeg=fake_ffmpeg(tmp_path, "kill -9 $$"))
    assert_stopped_without_blame(run(data, out, killed), out, "killed by signal 9")
    assert_rerun_finishes(run(data, out, params_file(tmp_path, cache_dir=None)), out)


def test_work_folder_removed_under_the_job_stops_the_run(data, tmp_path):
    out = tmp_path / "out"
    # what a second job's clean-up did: the transcode's folder vanishes as ffmpeg starts
    remover = fake_ffmpeg(tmp_path, 'for last; do :; done\nrm -rf "$(dirname "$last")"\nexec ffmpeg "$@"')
    proc = run(data, out, params_file(tmp_path, cache_dir=None, ffmpeg=remover))
    assert_stopped_without_blame(proc, out, "was removed")
    assert_rerun_finishes(run(data, out, params_file(tmp_path, cache_dir=None)), out)


def test_permission_error_is_the_machines_fault(media, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/videos/x.mp4")

    monkeypatch.setattr("preprocess.shard.local_copy", refuse)
    sample = {"key": "x", "error": None, "container": str(tmp_path), "source": "x.mp4", "offset": -1, "size": 1}
    with pytest.raises(MachineFault, match="Permission denied: '/data/videos/x.mp4'"):
        process_sample(sample, str(tmp_path), PreprocessConfig(cache_dir=None))


def test_oserror_writing_a_shard_leaves_it_unfinished(media, tmp_path):
    from preprocess.shard import shard_done, write_shard

    out = tmp_path / "out"
    out.mkdir()
    sample = {"key": "h264", "rows": [0], "origins": ["a:1"], "row_errors": [None], "video_id": "h264",
              "source": "h264.mp4", "format": "clipbert", "captions": ["c"], "qa": None, "split": None}
    probe = dict.fromkeys(["codec", "container", "fps", "num_frames", "width", "height", "duration",
                           "rotation", "bytes", "pix_fmt", "variable_frame_rate", "has_audio"], 0)
    gone = {"key": "h264", "error": None, "probe": probe, "outputs": [
        {"suffix": "", "path": str(tmp_path / "vanished.mp4"), "video": {}, "normalize": {}}]}
    with pytest.raises(MachineFault, match="No such file or directory"):
        write_shard(out, 0, [sample], [gone], PreprocessConfig(cache_dir=None))
    assert not shard_done(out, 0) and not [p for p in out.rglob("*") if p.is_file()]
    assert os.listdir(out) in ([], ["_stats"])


def test_a_run_killed_mid_transcode_leaves_no_temp_folder_behind_its_rerun(data, tmp_path):
    """SIGKILL (the OOM killer, a lost node) runs no clean-up: the transcode's temp folder stays in
    the cache. The next run removes it once nothing has written to it for twice the transcode
    time limit, and keeps a temp folder that is still being written (another run's)."""
    import signal
    import subprocess
    import time

    from tests.preprocess.helpers import REPO, cli

    out, cache = tmp_path / "out", tmp_path / "cache"
    slow = params_file(tmp_path, cache_dir=str(cache), transcode_timeout_s=60,
                       ffmpeg=fake_ffmpeg(tmp_path, 'sleep 30; exec ffmpeg "$@"'))
    proc = subprocess.Popen(cli("--annotations", str(data["ann"]), "--videos", str(data["videos"]), "--out",
                                str(out), "--params", str(slow), "--workers", "1", "--shard-size", "1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(cache.glob("*/.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the Python process alone: its ffmpeg child lives on
        proc.wait()
        os.killpg(proc.pid, signal.SIGKILL)  # then the orphans, so they cannot write any more
    left = list(cache.glob("*/.tmp-*"))  # the transcode's, and the next video's (prepared meanwhile)
    assert left
    live = left[0].parent / ".tmp-live-run"
    live.mkdir()
    old = time.time() - 121  # nothing written for over twice the 60 s limit
    for path in [p for tmp in left for p in (tmp, *tmp.iterdir())]:
        os.utime(path, (old, old))
    params = params_file(tmp_path, cache_dir=str(cache), transcode_timeout_s=60)
    assert_rerun_finishes(run(data, out, params), out)
    assert not [tmp for tmp in left if tmp.exists()]
    assert live.exists()  # written just now: a run that may still be going
