"""A training program as a multi-node DDP job that checkpoints and requeues itself.

:class:`DistributedTask` wraps the same ``main(argv) -> exit code`` that runs on one machine
(``train.pretrain.main``): every SLURM task exports ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT`` from submitit's view of the job and calls it. The training
code does not know it runs on SLURM.

Time limit and pre-emption. SLURM sends USR2 ``launch.slurm.signal_delay_s`` before the
limit (and on pre-emption where the cluster sets ``preempt_send_user_signal``). submitit's
handler for that signal would requeue at once, mid-step. We put our own handler in front of it:

1. USR2 arrives on every rank -> it is passed to the trainer as its stop request (the trainer's
   SIGUSR1 handler), so all ranks finish the step in flight and rank 0 writes a checkpoint;
2. ``main`` returns ``EXIT_INTERRUPTED`` (75);
3. rank 0 then hands the signal to submitit's handler, which calls :meth:`DistributedTask.
   checkpoint` (a copy of this task, ``--fresh`` dropped, so the rerun resumes from the
   checkpoint in the run folder) and ``scontrol requeue``; the other ranks wait to be stopped
   by the requeue.

A SIGTERM alone (``scancel``) also makes the trainer checkpoint and stop, but is not requeued:
the job fails with a message saying how to resume.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import time
from typing import Any, Callable

from train.signals import EXIT_INTERRUPTED

log = logging.getLogger("pipeline.launch")

TRAINER_STOP_SIGNAL = signal.SIGUSR1  # one of what train.signals.STOP listens to
NON_ZERO_RANK_WAIT_S = 300.0  # how long ranks > 0 wait for rank 0's requeue to stop them
# flags that must not survive a requeue: --fresh would drop the checkpoint, and --as-stage's
# rule (train/run.py) is for a new `dvc repro` of the stage, while a requeue continues the same
# run: it resumes by the program's own rule, which refuses other settings rather than retrain
RESUME_DROPS = ("--fresh", "--as-stage")


def load_main(entry: str) -> Callable[[list[str]], int]:
    """``"train.pretrain"`` or ``"train.pretrain:main"`` -> the function."""
    module, _, attr = entry.partition(":")
    fn = getattr(importlib.import_module(module), attr or "main", None)
    if not callable(fn):
        raise ValueError(f"{entry}: no callable {attr or 'main'} in module {module}")
    return fn


class DistributedTask:
    """Runs ``entry.main(argv)`` on one DDP rank; checkpointable by submitit (requeue + resume)."""

    def __init__(self, entry: str, argv: list[str], *, restarts: int = 0) -> None:
        self.entry = entry
        self.argv = list(argv)
        self.restarts = restarts

    def __call__(self) -> dict[str, Any]:
        import submitit

        job_env = submitit.JobEnvironment()
        dist_env = submitit.helpers.TorchDistributedEnvironment()
        # CUDA_VISIBLE_DEVICES is left alone: train.distributed picks the GPU from LOCAL_RANK.
        dist_env.export(set_cuda_visible_devices=False, overwrite=True)
        os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        log.info("%s rank %d/%d on %s (master %s:%s), restart %d", self.entry, dist_env.rank,
                 dist_env.world_size, job_env.hostname, dist_env.master_addr, dist_env.master_port,
                 self.restarts)
        main = load_main(self.entry)
        requeue_signal = job_env._usr_sig()
        submitit_handler = signal.getsignal(requeue_signal)
        asked: list[int] = []

        def pass_to_trainer(signum, frame):
            asked.append(signum)
            trainer_handler = signal.getsignal(TRAINER_STOP_SIGNAL)
            if callable(trainer_handler):
                trainer_handler(TRAINER_STOP_SIGNAL, frame)  # finish the step, checkpoint, return 75
            elif callable(submitit_handler):
                submitit_handler(signum, frame)  # not training yet: nothing to save, requeue now

        signal.signal(requeue_signal, pass_to_trainer)
        try:
            try:
                code = main(list(self.argv))
            except SystemExit as stop:  # argparse and friends: keep the job's result informative
                code = stop.code if isinstance(stop.code, int) else 1
        finally:
            signal.signal(requeue_signal, submitit_handler)
        if code == 0:
            return {"rank": dist_env.rank, "world_size": dist_env.world_size, "restarts": self.restarts,
                    "exit_code": 0}
        if code == EXIT_INTERRUPTED and asked:
            if dist_env.rank == 0 and callable(submitit_handler):
                submitit_handler(asked[0], None)  # checkpoint() + scontrol requeue + exit
            time.sleep(NON_ZERO_RANK_WAIT_S)
            raise RuntimeError(f"rank {dist_env.rank}: stopped for a requeue that did not happen")
        if code == EXIT_INTERRUPTED:
            raise RuntimeError(f"{self.entry} stopped by a signal after writing a checkpoint (job not "
                               "requeued); submit the same command again to resume")
        raise RuntimeError(f"{self.entry} exited with status {code}")

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on time-out/pre-emption: the same task, resuming instead of starting over.

        The trainer resumes by itself from the checkpoint in its run folder; only flags that
        would throw that checkpoint away (``--fresh``) are dropped.
        """
        import submitit

        argv = [a for a in self.argv if a not in RESUME_DROPS]
        return submitit.helpers.DelayedSubmission(DistributedTask(self.entry, argv, restarts=self.restarts + 1))

    def __repr__(self) -> str:
        return f"DistributedTask({self.entry!r}, {self.argv!r}, restarts={self.restarts})"


def run_local(entry: str, argv: list[str]) -> int:
    """The same entry point in this process (``launch.mode: local``)."""
    return int(load_main(entry)(list(argv)) or 0)


def submit(cfg, entry: str, argv: list[str], name: str):
    """Submit ``entry.main(argv)`` as one job of ``nodes x tasks_per_node`` DDP ranks."""
    from pipeline.launch.slurm import executor

    s = cfg.slurm
    ex = executor(cfg, name, nodes=s.nodes, tasks_per_node=s.tasks_per_node, gpus_per_node=s.gpus_per_node)
    job = ex.submit(DistributedTask(entry, argv))
    print(f"[launch] {name}: job {job.job_id}, {s.nodes} node(s) x {s.tasks_per_node} task(s) "
          f"(squeue -j {job.job_id}; logs {job.paths.stdout.parent})", flush=True)
    return job
