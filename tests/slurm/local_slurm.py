"""A real one-node SLURM cluster on this machine, for trying the cluster launchers and for tests.

``python tests/slurm/local_slurm.py start|stop|status`` installs Debian's ``slurm-wlm`` and
``munge`` when they are missing (apt-get, needs root), starts ``munged``, ``slurmctld`` and
``slurmd`` for a single node named after this host, and waits until the node is idle. Everything
the daemons write (state, spool, logs, pid files) lives in one folder, ``STATE_DIR`` by default.

The config is also placed at ``/etc/slurm/slurm.conf`` (the default path every SLURM client
reads) unless another cluster's config is already there, so ``sbatch``/``squeue``/``scontrol``
work in any shell without ``SLURM_CONF``; ``stop`` removes it again.

What this cluster lacks compared with a production one: accounting (no ``slurmdbd``), so
``sacct`` answers "accounting storage is disabled"; :mod:`pipeline.launch.slurm` falls back to
``squeue``/``scontrol`` for job states in that case.
"""

from __future__ import annotations

import argparse
import os
import sys
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = Path(os.environ.get("SMAUG_LOCAL_SLURM_DIR", "/var/tmp/smaug-local-slurm"))
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by tests/slurm/local_slurm.py"
OUR_MARKERS = (MARKER, "# written by pipeline.launch.local_slurm")  # and where it used to live
PARTITION = "debug"
PACKAGES = ("slurm-wlm", "munge")


class LocalSlurmError(RuntimeError):
    """The local cluster could not be installed or started; the message carries the log tails."""


@dataclass(frozen=True)
class Cluster:
    state_dir: Path
    conf: Path
    node: str
    partition: str = PARTITION

    def env(self) -> dict[str, str]:
        """Environment for SLURM clients talking to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}


# --------------------------------------------------------------------------- install


def ensure_installed() -> None:
    """apt-get install slurm-wlm and munge unless their daemons are already on PATH."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        raise LocalSlurmError("slurm-wlm/munge are not installed and installing them needs root")
    if not shutil.which("apt-get"):
        raise LocalSlurmError("slurm-wlm/munge are not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise LocalSlurmError(f"apt-get install {' '.join(PACKAGES)} failed:\n{_tail(done.stderr)}")


# --------------------------------------------------------------------------- config


def _ours(conf: Path) -> bool:
    text = conf.read_text(errors="replace")
    return any(m in text for m in OUR_MARKERS)


def slurm_conf(state_dir: Path, node: str, cpus: int, memory_mb: int) -> str:
    """A minimal slurm.conf: one node, one partition, no cgroups, no accounting."""
    s = state_dir
    return f"""{MARKER}
ClusterName=smaug-local
SlurmctldHost={node}
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# no cgroups in a container: track processes by parent pid, bind no tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
# finished jobs stay visible to squeue/scontrol for this long (no accounting database here)
MinJobAge=600
KillWait=10
NodeName={node} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _node_name() -> str:
    return socket.gethostname().split(".")[0]


def cluster(state_dir: Path | None = None) -> Cluster:
    state_dir = Path(state_dir or STATE_DIR)
    return Cluster(state_dir=state_dir, conf=state_dir / "slurm.conf", node=_node_name())


# --------------------------------------------------------------------------- daemons


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"({path} missing)"
    return f"--- {path}\n" + _tail(path.read_text(errors="replace"), lines)


def _munge_works() -> bool:
    if not shutil.which("munge"):
        return False
    enc = _run(["munge", "-n"])
    return enc.returncode == 0 and _run(["unmunge"], input=enc.stdout).returncode == 0


def start_munge(state_dir: Path) -> None:
    """Start munged as the munge user (SLURM authenticates every message through it)."""
    if _munge_works():
        return
    run_dir = Path("/run/munge")
    run_dir.mkdir(parents=True, exist_ok=True)
    for d in (run_dir, Path("/var/log/munge"), Path("/var/lib/munge"), Path("/etc/munge")):
        d.mkdir(parents=True, exist_ok=True)
        _run(["chown", "-R", "munge:munge", str(d)])
    if not Path("/etc/munge/munge.key").exists():
        _run(["runuser", "-u", "munge", "--", "mungekey", "--create"])
    done = _run(["runuser", "-u", "munge", "--", "munged"])
    for _ in range(50):
        if _munge_works():
            (state_dir / "munged.started").write_text("1")
            return
        time.sleep(0.1)
    raise LocalSlurmError(
        f"munged did not start: {done.stderr.strip()}\n{_log_tail(Path('/var/log/munge/munged.log'))}"
    )


def _pid(path: Path) -> int | None:
    """The live process named by a pid file, else None (an exited daemon may linger as a zombie
    where PID 1 does not reap, e.g. in containers: that counts as gone)."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return None if stat.rsplit(")", 1)[-1].split()[0] == "Z" else pid


def node_state(c: Cluster) -> str:
    done = _run(["sinfo", "-h", "-n", c.node, "-o", "%t"], env=c.env())
    return done.stdout.strip() if done.returncode == 0 else ""


def start(state_dir: Path | None = None, *, cpus: int | None = None, memory_mb: int = 20000,
          timeout_s: float = 60.0) -> Cluster:
    """Install if needed, write the config, start the daemons, wait for the node to be idle."""
    c = cluster(state_dir)
    ensure_installed()
    if _pid(c.state_dir / "slurmctld.pid") and node_state(c) in ("idle", "mix", "alloc"):
        _install_system_conf(c)
        return c  # already running
    for sub in ("state", "spool", "log"):
        (c.state_dir / sub).mkdir(parents=True, exist_ok=True)
    start_munge(c.state_dir)
    cpus = cpus or os.cpu_count() or 1
    c.conf.write_text(slurm_conf(c.state_dir, c.node, cpus, memory_mb))
    _install_system_conf(c)
    env = c.env()
    # -c: start clean, forgetting jobs of an earlier run of this harness
    for cmd in (["slurmctld", "-c", "-f", str(c.conf)], ["slurmd", "-f", str(c.conf)]):
        done = _run(cmd, env=env)
        if done.returncode != 0:
            stop(c.state_dir)
            raise LocalSlurmError(f"{cmd[0]} failed to start: {done.stderr.strip()}\n{_logs(c)}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = node_state(c)
        if state == "idle":
            return c
        if state.startswith(("down", "drain")):
            _run(["scontrol", "update", f"NodeName={c.node}", "State=RESUME"], env=env)
        time.sleep(0.5)
    logs = _logs(c)
    stop(c.state_dir)
    raise LocalSlurmError(f"node {c.node} not idle after {timeout_s:.0f}s\n{logs}")


def _logs(c: Cluster) -> str:
    return "\n".join(_log_tail(c.state_dir / "log" / f"{d}.log") for d in ("slurmctld", "slurmd"))


def _install_system_conf(c: Cluster) -> None:
    """Place our config where clients look by default, unless a real cluster's config is there."""
    if SYSTEM_CONF.exists() and not _ours(SYSTEM_CONF):
        return
    try:
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.write_text(c.conf.read_text())
    except OSError:
        pass  # not root: clients then need SLURM_CONF, which `status` prints


def stop(state_dir: Path | None = None, timeout_s: float = 20.0) -> None:
    """Stop the daemons this harness started (by their pid files) and remove our system config."""
    c = cluster(state_dir)
    if _pid(c.state_dir / "slurmctld.pid") and _pid(c.state_dir / "slurmd.pid"):
        _cancel_jobs(c)
    for daemon in ("slurmd", "slurmctld"):
        pid = _pid(c.state_dir / f"{daemon}.pid")
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid(c.state_dir / f"{daemon}.pid") == pid:
            time.sleep(0.2)
        if _pid(c.state_dir / f"{daemon}.pid") == pid:
            os.kill(pid, signal.SIGKILL)
    if (c.state_dir / "munged.started").exists():
        pid = _pid(Path("/run/munge/munged.pid"))
        if pid:
            os.kill(pid, signal.SIGTERM)
        (c.state_dir / "munged.started").unlink()
    if SYSTEM_CONF.exists() and _ours(SYSTEM_CONF):
        SYSTEM_CONF.unlink()


def _cancel_jobs(c: Cluster, timeout_s: float = 20.0) -> None:
    """Cancel this cluster's jobs and wait for their steps to end, so no job outlives slurmd."""
    env = c.env()
    jobs = _run(["squeue", "-h", "-o", "%A"], env=env).stdout.split()
    if not jobs:
        return
    _run(["scancel", *jobs], env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _run(["squeue", "-h", "-t", "R,CG,PD", "-o", "%A"], env=env).stdout.split():
            return
        time.sleep(0.5)


def status(state_dir: Path | None = None) -> str:
    c = cluster(state_dir)
    running = {d: _pid(c.state_dir / f"{d}.pid") for d in ("slurmctld", "slurmd")}
    lines = [f"state dir: {c.state_dir}", f"config:    {c.conf}  (export SLURM_CONF={c.conf})"]
    lines += [f"{d}: {'running, pid ' + str(p) if p else 'not running'}" for d, p in running.items()]
    lines.append(f"munge: {'ok' if _munge_works() else 'not running'}")
    if all(running.values()):
        lines.append(_run(["sinfo"], env=c.env()).stdout.rstrip())
        lines.append(_run(["squeue"], env=c.env()).stdout.rstrip())
    return "\n".join(lines)


def is_running(state_dir: Path | None = None) -> bool:
    c = cluster(state_dir)
    return bool(_pid(c.state_dir / "slurmctld.pid") and _pid(c.state_dir / "slurmd.pid"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/slurm/local_slurm.py", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=STATE_DIR,
                        help="folder for the daemons' state, spool, logs and pid files")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the node (default: all)")
    parser.add_argument("--memory-mb", type=int, default=20000, help="RealMemory of the node")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start(args.dir, cpus=args.cpus, memory_mb=args.memory_mb)
        elif args.action == "stop":
            stop(args.dir)
    except LocalSlurmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(status(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
