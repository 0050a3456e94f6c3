"""The ``launch:`` section of params.yaml: where each stage runs (here, under dask, on SLURM).

``mode`` is the one switch: ``local`` runs a stage in this process (or its own worker pool),
``dask`` spreads per-shard work over a dask cluster (a LocalCluster, or dask-jobqueue's
SLURMCluster when ``dask.cluster: slurm``), ``slurm`` submits the stage through submitit as a
job array (preprocessing) or a multi-node DDP job (training) and waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.config import REPO_ROOT, check

Mode = Literal["local", "dask", "slurm"]


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = None  # null: the cluster's default partition
    nodes: int = 1  # nodes per training job (array tasks always use one)
    gpus_per_node: int = 0  # 0 on CPU-only clusters; training starts one task per GPU then
    tasks_per_node: int = 1  # DDP ranks per node (set = gpus_per_node on GPU nodes)
    cpus_per_task: int = 2  # CPU cores per task (decode workers for training)
    mem_gb: float | None = None  # memory per node; null: the partition's default
    timeout_min: int = 60  # wall-clock limit of one job (one array task); requeues restart it
    array_parallelism: int = 16  # array tasks running at once
    signal_delay_s: int = 120  # USR2 this long before the limit: time to write a checkpoint
    max_num_timeout: int = 3  # requeues after a time-out before giving up
    shards_per_task: int = 1  # preprocessing shards per array task
    retries: int = 1  # a failed array task is resubmitted alone this many times
    poll_s: float = 5.0  # how often the waiting stage looks at the jobs
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # extra #SBATCH keys, e.g. {account: x}
    setup: list[str] = field(default_factory=list)  # shell lines run before the task (module load ...)

    def __post_init__(self) -> None:
        check(self.nodes >= 1, "nodes", "must be >= 1")
        check(self.gpus_per_node >= 0, "gpus_per_node", "must be >= 0")
        check(self.tasks_per_node >= 1, "tasks_per_node", "must be >= 1")
        check(self.cpus_per_task >= 1, "cpus_per_task", "must be >= 1")
        check(self.mem_gb is None or self.mem_gb > 0, "mem_gb", "must be > 0 or null")
        check(self.timeout_min >= 1, "timeout_min", "must be >= 1 minute")
        check(self.array_parallelism >= 1, "array_parallelism", "must be >= 1")
        check(0 <= self.signal_delay_s < self.timeout_min * 60, "signal_delay_s",
              "must be in [0, timeout_min * 60)")
        check(self.max_num_timeout >= 0, "max_num_timeout", "must be >= 0")
        check(self.shards_per_task >= 1, "shards_per_task", "must be >= 1")
        check(self.retries >= 0, "retries", "must be >= 0")
        check(self.poll_s > 0, "poll_s", "must be > 0")
        check(self.gpus_per_node == 0 or self.tasks_per_node == self.gpus_per_node, "tasks_per_node",
              "must equal gpus_per_node on GPU nodes (one DDP rank per GPU)")


@dataclass(frozen=True)
class DaskConfig:
    cluster: Literal["local", "slurm"] = "local"  # local: LocalCluster here; slurm: dask-jobqueue
    workers: int = 2  # worker processes (local) or SLURM worker jobs (slurm)
    threads_per_worker: int = 1  # ffmpeg is one process per task: one thread per worker is enough
    cores: int = 4  # SLURMCluster: cores per worker job
    memory: str = "8GB"  # SLURMCluster: memory per worker job
    walltime: str = "01:00:00"  # SLURMCluster: time limit of a worker job
    queue: str | None = None  # SLURMCluster: partition; null: the default one
    job_extra_directives: list[str] = field(default_factory=list)  # SLURMCluster: extra #SBATCH lines
    dashboard_address: str = ":8787"  # where the dashboard listens (printed at start)

    def __post_init__(self) -> None:
        check(self.workers >= 1, "workers", "must be >= 1")
        check(self.threads_per_worker >= 1, "threads_per_worker", "must be >= 1")
        check(self.cores >= 1, "cores", "must be >= 1")
        check(bool(self.memory.strip()), "memory", "must not be empty (e.g. 8GB)")
        parts = self.walltime.split(":")
        check(len(parts) == 3 and all(p.isdigit() for p in parts), "walltime", "must look like HH:MM:SS")
        for i, line in enumerate(self.job_extra_directives):
            check(line.startswith("--"), f"job_extra_directives[{i}]", "must start with -- (e.g. --account=x)")


@dataclass(frozen=True)
class LaunchConfig:
    mode: Mode = "local"  # local | dask | slurm (the CLI's --launch overrides it)
    log_dir: str = "logs/submitit"  # submitit folder: job scripts, pickles, stdout/stderr; must be shared
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)

    def __post_init__(self) -> None:
        check(bool(self.log_dir.strip()), "log_dir", "must not be empty")

    def log_path(self) -> Path:
        """``log_dir`` as an absolute path (relative ones are under the repository root)."""
        path = Path(self.log_dir)
        return path if path.is_absolute() else REPO_ROOT / path
