"""Running the same stages on one machine, under dask, or on a SLURM cluster (submitit).

``launch.mode`` in params.yaml (or ``--launch`` on the command line) picks one:

=========  ======================================  ===========================================
mode       preprocessing                           training (pre-training, fine-tuning)
=========  ======================================  ===========================================
local      ``python -m preprocess`` as is          ``train.pretrain.main`` in this process
dask       samples on a LocalCluster / dask-       (runs locally)
           jobqueue SLURMCluster (``launch.dask``)
slurm      a job array, ``shards_per_task``        one DDP job, ``nodes x tasks_per_node``
           shards per task (:mod:`.array`)         ranks, requeued with resume (:mod:`.distributed`)
=========  ======================================  ===========================================

Entry points: ``python -m pipeline.launch.preprocess`` and ``python -m pipeline.launch.train``;
both wait for their jobs and exit with their status, so DVC stages work in every mode.
``python tests/slurm/local_slurm.py start|stop|status`` brings up a one-node SLURM here.
"""

from pipeline.launch.config import DaskConfig, LaunchConfig, SlurmConfig

__all__ = ["LaunchConfig", "SlurmConfig", "DaskConfig"]
