"""The launch section, the requeue hand-over and the job scripts (no running cluster needed)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT, ConfigError, section
from pipeline.launch import LaunchConfig
from pipeline.launch.distributed import DistributedTask


def launch(**raw) -> LaunchConfig:
    return section({"launch": raw}, LaunchConfig, "launch")


@pytest.mark.parametrize("raw, message", [
    ({"mode": "cloud"}, "launch.mode: 'cloud' is not one of"),
    ({"slurm": {"timeout_min": 1, "signal_delay_s": 90}}, "launch.slurm.signal_delay_s: must be in [0, timeout_min * 60)"),
    ({"slurm": {"gpus_per_node": 4, "tasks_per_node": 1}}, "launch.slurm.tasks_per_node: must equal gpus_per_node"),
    ({"slurm": {"array_parallelism": 0}}, "launch.slurm.array_parallelism: must be >= 1"),
    ({"slurm": {"partion": "gpu"}}, "launch.slurm.partion: unknown key"),
    ({"dask": {"walltime": "1h"}}, "launch.dask.walltime: must look like HH:MM:SS"),
    ({"dask": {"job_extra_directives": ["account=x"]}}, "launch.dask.job_extra_directives[0]: must start with --"),
    ({"log_dir": " "}, "launch.log_dir: must not be empty"),
])
def test_bad_values_are_rejected_by_name(raw, message):
    with pytest.raises(ConfigError) as err:
        launch(**raw)
    assert str(err.value).startswith(message), str(err.value)


def test_log_dir_relative_to_the_repository():
    assert launch().log_path() == REPO_ROOT / "logs" / "submitit"
    assert launch(log_dir="/shared/logs").log_path() == Path("/shared/logs")


def test_checkpoint_resubmits_itself_resuming():
    task = DistributedTask("train.pretrain", ["--recipe", "dense", "--fresh", "pretrain.steps=5", "--as-stage"])
    delayed = task.checkpoint()
    again = delayed.function
    assert isinstance(again, DistributedTask) and again is not task
    # --fresh would drop the checkpoint; --as-stage would retrain it if the tree was edited meanwhile
    assert again.argv == ["--recipe", "dense", "pretrain.steps=5"]
    assert again.restarts == 1 and again.checkpoint().function.restarts == 2
    assert task.argv[2] == "--fresh"  # the original is untouched


def test_cli_rejects_a_bad_launch_value_by_name(capsys):
    from pipeline.launch.train import main

    assert main(["--launch", "slurm", "launch.slurm.nodes=0"]) == 2
    assert "launch.slurm.nodes: must be >= 1" in capsys.readouterr().err


def test_slurm_mode_without_slurm_says_what_to_do(monkeypatch, tmp_path):
    from pipeline.launch.slurm import SlurmUnavailable, executor

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch/srun here
    with pytest.raises(SlurmUnavailable, match="tests/slurm/local_slurm.py start"):
        executor(launch(mode="slurm"), "x")


@pytest.mark.skipif(not shutil.which("srun"), reason="SLURM clients not installed (submitit needs srun)")
def test_job_script_carries_the_params(tmp_path):
    from pipeline.launch.slurm import executor

    cfg = launch(log_dir=str(tmp_path), slurm={
        "partition": "gpu", "mem_gb": 1.5, "timeout_min": 30, "signal_delay_s": 200, "cpus_per_task": 6,
        "additional_parameters": {"account": "proj"}, "setup": ["module load ffmpeg"]})
    ex = executor(cfg, "pretrain", nodes=2, tasks_per_node=4, gpus_per_node=4)
    script = ex._make_submission_file_text("CMD", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --mem=1536MB", "#SBATCH --time=30",
                 "#SBATCH --signal=USR2@200", "#SBATCH --cpus-per-task=6", "#SBATCH --nodes=2",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --account=proj",
                 "#SBATCH --job-name=smaug-pretrain", "module load ffmpeg", f"export PYTHONPATH={REPO_ROOT}"):
        assert line in script, (line, script)
    assert f"{tmp_path}/pretrain/%j" in script
    assert ex.python == sys.executable


def test_job_size_flags_keep_one_gpu_per_task():
    from pipeline.launch.train import with_job_size

    gpu = launch(slurm={"nodes": 4, "gpus_per_node": 8, "tasks_per_node": 8})
    single = with_job_size(gpu, 1, 1)  # fine-tuning is one process: one node, one task, one GPU
    assert (single.slurm.nodes, single.slurm.tasks_per_node, single.slurm.gpus_per_node) == (1, 1, 1)
    assert with_job_size(launch(), None, 2).slurm.gpus_per_node == 0  # CPU cluster stays CPU
    with pytest.raises(ConfigError, match=r"^launch\.slurm\.nodes: must be >= 1"):
        with_job_size(gpu, 0, None)
