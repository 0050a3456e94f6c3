"""Preprocessing as a SLURM job array gives what the single-machine run gives."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slurm



def samples(out: Path) -> dict[str, dict]:
    """key -> sample JSON, over every shard."""
    found = {}
    for tar in sorted(out.glob("shard-*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.load(tf.extractfile(m))
                    assert meta["key"] not in found, f"{meta['key']} in two shards"
                    found[meta["key"]] = meta
    return found


def stats_rows(out: Path) -> list[dict]:
    """stats.parquet without what differs between two runs (ffmpeg's pointers in messages)."""
    cols = ["row", "key", "status", "error", "shard", "out_num_frames", "out_width", "out_height"]
    rows = pq.read_table(out / "stats.parquet").select(cols).to_pylist()
    for r in rows:
        r["error"] = r["error"] and r["error"].split(":")[0]
    return rows


def test_array_gives_the_same_samples_as_one_machine(local_shards, slurm_shards, dataset):
    CLIPS = dataset.clips
    out, logs, code = slurm_shards
    assert code == 0
    local, remote = samples(local_shards), samples(out)
    assert sorted(remote) == [f"clip_{i:05d}" for i in range(CLIPS)]
    assert remote == local  # same keys, captions, probes and normalised-video facts
    assert stats_rows(out) == stats_rows(local_shards)
    summary = json.loads((out / "stats_summary.json").read_text())
    assert summary["ok"] == CLIPS and summary["failed"] == 1
    assert summary["failures_by_reason"] == {"not a video file": 1}


def test_array_ran_one_task_per_group_of_shards(slurm_shards, dataset):
    CLIPS, SHARD_SIZE = dataset.clips, dataset.shard_size
    out, logs, code = slurm_shards
    assert code == 0
    shards = -(-(CLIPS + 1) // SHARD_SIZE)
    tasks = sorted(p.name for p in (logs / f"preprocess-{out.name}").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(tasks) == -(-shards // 2)  # shards_per_task=2
    script = next((logs / f"preprocess-{out.name}").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-2%2" in script  # array_parallelism=2
    assert "#SBATCH --signal=USR2@30" in script


def test_rerun_after_a_lost_shard_redoes_only_that_shard(slurm_shards, dataset, tmp_path):
    """Delete one finished shard: the rerun's array writes it again, the others are kept."""
    from pipeline.launch.preprocess import main

    out, logs, code = slurm_shards
    assert code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    stats = sorted((out / "_stats").glob("shard-000001*"))
    assert stats, "per-shard stats missing"
    for p in [out / "shard-000001.tar", *stats]:
        p.unlink()
    code = main(["--launch", "slurm", *dataset.args(out), "--stage", "shard",
                 f"launch.log_dir={tmp_path / 'logs'}", "launch.slurm.cpus_per_task=1",
                 "launch.slurm.poll_s=1", "launch.slurm.shards_per_task=5"])
    assert code == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    assert sorted(after) == sorted(before)
    changed = [n for n in after if after[n] != before[n]]
    assert changed == ["shard-000001.tar"]
    assert len(samples(out)) == dataset.clips
