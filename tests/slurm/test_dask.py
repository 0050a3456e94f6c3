"""Dask execution: the LocalCluster default gives the single-machine samples; SLURMCluster runs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from pipeline.config import section
from pipeline.launch.config import LaunchConfig
from pipeline.launch.dask_cluster import dask_client, make_cluster


def keys_and_meta(out: Path) -> dict[str, dict]:
    found = {}
    for tar in sorted(out.glob("shard-*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.load(tf.extractfile(m))
                    found[meta["key"]] = meta
    return found


def test_dask_mode_gives_the_single_machine_samples(local_shards, dataset, tmp_path, capsys):
    from pipeline.launch.preprocess import main

    out = tmp_path / "pretrain"
    code = main(["--launch", "dask", *dataset.args(out), "launch.dask.workers=2",
                 "launch.dask.dashboard_address=:0"])
    assert code == 0
    assert keys_and_meta(out) == keys_and_meta(local_shards)
    assert json.loads((out / "stats_summary.json").read_text())["ok"] == dataset.clips
    assert "dashboard: http" in capsys.readouterr().out


def test_slurm_cluster_job_script_follows_params(tmp_path):
    cfg = section({"launch": {"dask": {"cluster": "slurm", "cores": 2, "memory": "3GB", "walltime": "00:07:00",
                                       "queue": "debug", "job_extra_directives": ["--comment=smaug"],
                                       "dashboard_address": ":0"}}}, LaunchConfig, "launch")
    cluster = make_cluster(cfg.dask, str(tmp_path))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p debug", "#SBATCH -n 1", "#SBATCH --cpus-per-task=2", "#SBATCH -t 00:07:00",
                 "#SBATCH --comment=smaug"):
        assert line in script, (line, script)
    assert "--nworkers 2" in script and "--nthreads 1" in script


@pytest.mark.slurm
def test_slurm_cluster_runs_tasks_on_the_local_slurm(slurm_cluster, tmp_path, capsys):
    cfg = section({"launch": {"log_dir": str(tmp_path / "logs"), "dask": {
        "cluster": "slurm", "workers": 1, "cores": 1, "memory": "1GB", "walltime": "00:05:00",
        "dashboard_address": ":0"}}}, LaunchConfig, "launch")
    with dask_client(cfg) as client:
        client.wait_for_workers(1, timeout=180)
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    printed = capsys.readouterr().out
    assert "dashboard: http" in printed and "#SBATCH" in printed
