"""The one-node SLURM harness: its config, and its CLI against the running daemons."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT
from tests.slurm import local_slurm


def test_config_names_one_node_and_keeps_state_in_its_folder(tmp_path):
    text = local_slurm.slurm_conf(tmp_path, "node7", cpus=2, memory_mb=20000)
    assert "SlurmctldHost=node7" in text
    assert "NodeName=node7 CPUs=2 RealMemory=20000" in text
    assert f"PartitionName={local_slurm.PARTITION} Nodes=node7 Default=YES" in text
    for key in ("StateSaveLocation", "SlurmdSpoolDir", "SlurmctldPidFile", "SlurmdPidFile",
                "SlurmctldLogFile", "SlurmdLogFile"):
        line = next(l for l in text.splitlines() if l.startswith(key + "="))
        assert line.split("=", 1)[1].startswith(str(tmp_path)), line
    assert text.startswith(local_slurm.MARKER)  # how stop() knows /etc/slurm/slurm.conf is ours


@pytest.mark.slurm
def test_cli_start_is_idempotent_and_status_shows_the_node(slurm_cluster):
    run = lambda *a: subprocess.run([sys.executable, str(Path(local_slurm.__file__)), *a],
                                    capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    started = run("start")
    assert started.returncode == 0, started.stderr
    status = run("status")
    assert status.returncode == 0
    assert "slurmctld: running" in status.stdout and "slurmd: running" in status.stdout
    assert "munge: ok" in status.stdout
    assert f"{local_slurm.PARTITION}*" in status.stdout
    assert any(state in status.stdout for state in ("idle", "mix", "alloc"))
    # any shell finds the cluster without SLURM_CONF (unless another cluster's config was there)
    system = Path("/etc/slurm/slurm.conf").read_text()
    if system.startswith(local_slurm.MARKER):
        assert system == slurm_cluster.conf.read_text()
