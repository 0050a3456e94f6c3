"""Killed with SIGKILL mid-run, a rerun completes the set; the same input gives the same bytes.

The videos come as one tar (members ``videos/<stem>.<ext>``, the synthetic benchmark's layout)
and the annotations as an MSR_VTT.json, so this also covers tar input end to end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
STEMS = ["h264", "vp9", "mpeg4", "hevc", "anim", "rotated", "vfr", "clip with spaces é"]


def cli(out: Path, data: dict) -> list[str]:
    return [sys.executable, "-m", "preprocess", "--annotations", str(data["ann"]), "--videos",
            str(data["tar"]), "--out", str(out), "--params", str(data["params"]), "--workers", "1",
            "--shard-size", "1", "--split", "train", "--no-progress"]


@pytest.fixture(scope="module")
def data(media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    tar_path = tmp / "videos.tar"
    with tarfile.open(tar_path, "w") as tar:
        for stem in STEMS:
            path = media["good"][stem]
            tar.add(path, arcname=f"videos/{path.name}")
    videos = [{"video_id": s, "split": "train"} for s in STEMS] + [{"video_id": "other", "split": "test"}]
    anns = [{"image_id": s, "caption": f"caption {i} of {s}"} for s in STEMS for i in range(2)]
    anns.append({"image_id": "other", "caption": "a test-split video that --split train leaves out"})
    ann = tmp / "MSR_VTT.json"
    ann.write_text(json.dumps({"videos": videos, "annotations": anns}, ensure_ascii=False))
    params = tmp / "params.yaml"
    params.write_text("preprocess:\n  cache_dir: null\n")
    return {"tmp": tmp, "tar": tar_path, "ann": ann, "params": params}


def shard_contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


def keys_in(out: Path) -> list[str]:
    keys = []
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            keys += [m.name.split(".")[0] for m in tar if m.name.endswith(".mp4")]
    return keys


def test_sigkill_then_rerun_completes_the_same_set(data):
    fresh = data["tmp"] / "fresh"
    subprocess.run(cli(fresh, data), cwd=REPO, check=True, capture_output=True)

    out = data["tmp"] / "killed"
    proc = subprocess.Popen(cli(out, data), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("shard-*.tar")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ffmpeg children, all at once
    proc.wait()
    assert list(out.glob("shard-*.tar")), "no shard appeared before the deadline"
    assert not (out / "stats.parquet").exists(), "the run finished before it could be killed"
    # every visible file is whole: each tar opens and holds complete json+mp4 pairs
    for shard in out.glob("shard-*.tar"):
        with tarfile.open(shard) as tar:
            names = sorted(m.name for m in tar)
        assert len(names) % 2 == 0 and all(n.endswith((".json", ".mp4")) for n in names)
    for stats in (out / "_stats").glob("*.parquet"):
        pq.read_table(stats)

    subprocess.run(cli(out, data), cwd=REPO, check=True, capture_output=True)
    keys = keys_in(out)
    assert sorted(keys) == sorted(set(keys))  # none twice
    assert set(keys) == {"h264", "vp9", "mpeg4", "hevc", "anim", "rotated", "vfr", "clip_with_spaces_é"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    stats = pq.read_table(out / "stats.parquet").to_pylist()
    assert len(stats) == 2 * len(STEMS) and all(r["status"] == "ok" for r in stats)
    assert {r["source"] for r in stats} >= {"videos/h264.mp4", "videos/clip with spaces é.mp4"}

    # determinism: the interrupted-and-resumed run wrote exactly the fresh run's bytes
    assert shard_contents(out) == shard_contents(fresh)
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(fresh / "manifest.parquet"))


def test_rerun_of_a_finished_run_changes_nothing(data):
    out = data["tmp"] / "fresh"
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    subprocess.run(cli(out, data), cwd=REPO, check=True, capture_output=True)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    assert before == after and len(before) == len(STEMS)
