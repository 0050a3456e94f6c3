"""A dask cluster from ``launch.dask``: a LocalCluster here, or dask-jobqueue's SLURMCluster.

The cluster is opened for one stage and closed after it; its dashboard address is printed so a
user can watch the tasks (``ssh -L 8787:<host>:8787`` from a laptop when it runs on a cluster).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from pipeline.launch.config import DaskConfig, LaunchConfig


def make_cluster(cfg: DaskConfig, log_dir: str | None = None):
    """The cluster object (not started workers' client); caller closes it."""
    if cfg.cluster == "local":
        from distributed import LocalCluster

        # Processes, not threads: the per-sample work holds the GIL between ffmpeg calls.
        return LocalCluster(n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker,
                            processes=True, dashboard_address=cfg.dashboard_address)
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        cores=cfg.cores, memory=cfg.memory, walltime=cfg.walltime, queue=cfg.queue,
        processes=max(1, cfg.cores // cfg.threads_per_worker),
        job_extra_directives=list(cfg.job_extra_directives),
        log_directory=log_dir, scheduler_options={"dashboard_address": cfg.dashboard_address},
    )
    cluster.scale(jobs=cfg.workers)
    return cluster


@contextlib.contextmanager
def dask_client(cfg: LaunchConfig) -> Iterator:
    """``with dask_client(cfg) as client:`` a connected client; the dashboard address is printed."""
    from distributed import Client

    log_dir = str(cfg.log_path() / "dask") if cfg.dask.cluster == "slurm" else None
    cluster = make_cluster(cfg.dask, log_dir)
    try:
        client = Client(cluster)
        try:
            print(f"[launch] dask {cfg.dask.cluster} cluster, dashboard: {client.dashboard_link}", flush=True)
            if cfg.dask.cluster == "slurm":
                print(f"[launch] dask worker jobs script:\n{cluster.job_script()}", flush=True)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
