"""One writer per output folder, per shard: a second job is refused, array tasks share a folder.

Two real ``python -m preprocess`` jobs are started on one ``--out`` (the transcodes slowed down
so that they overlap): one must be refused with who holds the folder, the other must finish,
and a rerun must find every good video ``ok``. Two processes writing different shards of one
folder (what SLURM array tasks do) must both succeed, and a killed holder must free its lock.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.api import build_manifest, finalize, plan_shards
from preprocess.config import PreprocessConfig
from preprocess.faults import OutputBusy
from preprocess.lock import hold
from tests.preprocess.helpers import REPO, assert_error_line, cli, clip_set, params_file, run_cli

GOOD = ["h264", "vp9", "mpeg4", "anim", "long", "rotated"]


@pytest.fixture(scope="module")
def data(media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("writers")
    videos, ann = clip_set(media, GOOD, tmp)
    slow = tmp / "slow-ffmpeg"  # overlaps two jobs however fast the machine
    slow.write_text('#!/bin/bash\ncase "$*" in *-decoders*) ;; *) sleep 0.4;; esac\nexec ffmpeg "$@"\n')
    gated = tmp / "gated-ffmpeg"  # waits (at most 30 s) until the test opens the gate
    gated.write_text('#!/bin/bash\ncase "$*" in *-decoders*) exec ffmpeg "$@";; esac\n'
                     f'for i in $(seq 600); do [ -e {tmp / "gate"} ] && break; sleep 0.05; done\n'
                     'exec ffmpeg "$@"\n')
    for script in (slow, gated):
        script.chmod(0o755)
    (tmp / "gated").mkdir()
    return {"tmp": tmp, "videos": videos, "ann": ann, "gate": tmp / "gate",
            "gated": params_file(tmp / "gated", cache_dir=None, ffmpeg=str(gated)),
            "fast": params_file(tmp, cache_dir=None)}


def job(data, out: Path, params: Path) -> list[str]:
    return cli("--annotations", str(data["ann"]), "--videos", str(data["videos"]), "--out", str(out),
               "--params", str(params), "--workers", "1", "--shard-size", "1")


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.02)


def test_a_second_job_on_one_folder_is_refused_and_nothing_is_lost(data, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(job(data, out, data["gated"]), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "_work").exists())  # the first job is transcoding (held at the gate)
    second = subprocess.Popen(job(data, out, data["gated"]), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        second.wait(timeout=30)  # refused at once; without a lock it would reach the gate too
    except subprocess.TimeoutExpired:
        pass
    data["gate"].touch()
    procs = []
    for p in (first, second):
        stdout, stderr = p.communicate(timeout=300)
        procs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    refused = [p for p in procs if p.returncode != 0]
    assert len(refused) == 1, [p.stderr[-1500:] for p in procs]
    assert_error_line(refused[0], f"{out} is being written by pid {first.pid} on {socket.gethostname()} since")

    rerun = run_cli(*job(data, out, data["fast"])[3:])
    stats = pq.read_table(out / "stats.parquet").to_pylist()
    assert len(stats) == len(GOOD) and all(r["status"] == "ok" for r in stats), stats
    assert not any("internal error" in (r["error"] or "") for r in stats)
    assert rerun.returncode == 0 and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_array_tasks_write_different_shards_of_one_folder_at_once(data, tmp_path):
    out = tmp_path / "out"
    cfg = PreprocessConfig(cache_dir=None, shard_samples=1, workers=1, ffmpeg=str(data["tmp"] / "slow-ffmpeg"))
    build_manifest(data["ann"], data["videos"], out, cfg=cfg)
    ids = plan_shards(out, cfg)
    task = textwrap.dedent(f"""
        import sys
        from preprocess.api import process_shards
        from preprocess.config import PreprocessConfig
        cfg = PreprocessConfig(cache_dir=None, shard_samples=1, workers=1, ffmpeg={cfg.ffmpeg!r})
        process_shards({str(out)!r}, [int(i) for i in sys.argv[1:]], cfg, progress=False)
    """)
    tasks = [subprocess.Popen([sys.executable, "-c", task, *map(str, ids[k::2])], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    for t in tasks:
        assert t.wait(timeout=300) == 0, t.stderr.read()[-2000:]
    summary = finalize(out)
    assert summary["ok"] == len(GOOD) and summary["failed"] == 0


def test_a_held_shard_is_refused_and_a_killed_holder_frees_it(tmp_path):
    lock = tmp_path / "_work" / "shard-000000.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from preprocess.lock import hold
        with hold({str(lock)!r}, "x"):
            print("held", flush=True)
            time.sleep(600)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputBusy, match=f"out shard is being written by pid {holder.pid} on "):
        with hold(lock, "out shard"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock.exists()  # the crashed holder's file stays, but nothing holds it
    with hold(lock, "out shard"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
