"""SIGTERM / SIGUSR1: checkpoint, clean exit with EXIT_INTERRUPTED, and a resume that continues
the same loss curve through the real program (loader position, RNG, DVCLive)."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pipeline.config import REPO_ROOT
from train import pretrain
from train.checkpoint import load_training_state, read_state
from train.trainer import EXIT_INTERRUPTED, Trainer


def loss_rows(results):
    """The (step, loss) rows DVCLive has written whole. The test polls the file while the run
    writes it, so a header or a last line still being written is not a row yet."""
    path = results / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    if not path.exists():
        return []
    with path.open() as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    whole = [ln for ln in lines if ln.endswith("\n")]
    rows = list(csv.DictReader(whole, delimiter="\t"))
    if not rows or "step" not in rows[0] or "loss" not in rows[0]:
        return []
    return [(int(r["step"]), float(r["loss"])) for r in rows if r.get("step") and r.get("loss")]


def test_sigterm_writes_checkpoint_and_exits_75(tmp_path, params_file, overrides):
    cmd = [sys.executable, "-m", "train.pretrain", "--params", str(params_file), "--no-progress",
           *overrides("pretrain.steps=500")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while len(loss_rows(tmp_path / "results")) < 2:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() < deadline, "no training step logged in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "stopped by SIGTERM" in out
    state = read_state(tmp_path / "models" / "smaug")
    assert state["interrupted"] is True and state["finished"] is False
    assert 2 <= state["step"] < 500
    training = load_training_state(tmp_path / "models" / "smaug")
    assert training["step"] == state["step"]
    data = training["extra"]["data"]  # one batch per step, 4 batches an epoch (a slow machine may pass one)
    assert data["epoch"] * 4 + data["batch"] == state["step"]
    assert len(loss_rows(tmp_path / "results")) == state["step"]


def test_interrupt_then_rerun_continues_same_curve(tmp_path, params_file, overrides, monkeypatch):
    steps = 5
    args = ["--params", str(params_file), "--no-progress"]
    straight = tmp_path / "straight"
    assert pretrain.main(args + overrides(
        f"pretrain.steps={steps}",
        f"pretrain.out_dir={straight / 'models'}", f"pretrain.results_dir={straight / 'results'}")) == 0
    expected = loss_rows(straight / "results")
    assert [s for s, _ in expected] == list(range(1, steps + 1))

    # The same run, sent SIGUSR1 (a real signal to this process) during its second step.
    original = Trainer.train_step

    def train_step_with_signal(self, micro):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    resumed = tmp_path / "resumed"
    run = overrides(f"pretrain.steps={steps}",
                    f"pretrain.out_dir={resumed / 'models'}",
                    f"pretrain.results_dir={resumed / 'results'}")
    monkeypatch.setattr(Trainer, "train_step", train_step_with_signal)
    assert pretrain.main(args + run) == EXIT_INTERRUPTED
    assert read_state(resumed / "models" / "smaug")["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", original)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handlers are given back
    torch.manual_seed(4321)  # what happens between the runs must not matter
    assert pretrain.main(args + run) == 0
    got = loss_rows(resumed / "results")
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-6, rel=0)
    assert read_state(resumed / "models" / "smaug")["finished"] is True


# --------------------------------------------------------------------------- the whole process group
# What SLURM, `docker stop` and `kill -- -PGID` do: the signal reaches the trainer and its two
# (default) loader workers at once. Each test starts `python -m train.pretrain` in its own session
# and signals the group at one moment of the run.


def group_run(tmp_path, params_file, overrides, *extra, env=None, preexec_fn=None):
    """`python -m train.pretrain` with the default two loader workers, in its own process group."""
    run = [o for o in overrides(*extra) if not o.startswith("loader.num_workers=")]
    cmd = [sys.executable, "-m", "train.pretrain", "--params", str(params_file), "--no-progress", *run]
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn)
    return proc, run


def wait_until(proc, tmp_path, ready, what, timeout=240):
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        assert time.time() < deadline, f"{what} did not happen in time"
        time.sleep(0.05)


def finish(proc, tmp_path):
    try:
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, (tmp_path / "run.log").read_text()


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc/PID/status)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def leftovers(models):
    return sorted(p.name for p in models.iterdir() if p.name.startswith(".")) if models.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_group_signal_before_the_first_step_exits_75_with_nothing_to_lose(
        tmp_path, params_file, overrides, signum):
    proc, _ = group_run(tmp_path, params_file, overrides, "pretrain.steps=50")
    # The handler is in place from the program's first lines (before torch is even imported).
    wait_until(proc, tmp_path, lambda: catches(proc.pid, signal.SIGTERM), "handler installed")
    os.killpg(proc.pid, signum)
    code, out = finish(proc, tmp_path)
    assert code == EXIT_INTERRUPTED, out
    assert f"stopped by {signal.Signals(signum).name} at step 0" in out, out
    assert not (tmp_path / "models" / "smaug").exists()  # no step done: nothing to save
    assert leftovers(tmp_path / "models") == []
    assert loss_rows(tmp_path / "results") == []


def test_group_sigterm_in_epoch_0_with_two_workers_checkpoints_and_rerun_continues_curve(
        tmp_path, params_file, overrides, monkeypatch):
    steps = 60
    proc, run = group_run(tmp_path, params_file, overrides, f"pretrain.steps={steps}",
                         )
    wait_until(proc, tmp_path, lambda: len(loss_rows(tmp_path / "results")) >= 1, "a first step")
    os.killpg(proc.pid, signal.SIGTERM)  # trainer and both loader workers
    code, out = finish(proc, tmp_path)
    assert code == EXIT_INTERRUPTED, out
    assert "stopped by SIGTERM" in out and "DataLoader worker" not in out, out
    run_dir = tmp_path / "models" / "smaug"
    k = read_state(run_dir)["step"]
    data = load_training_state(run_dir)["extra"]["data"]
    assert 1 <= k < steps and data["epoch"] == 0 and data["batch"] == k  # 4 batches an epoch
    assert [s for s, _ in loss_rows(tmp_path / "results")] == list(range(1, k + 1))

    # Rerun the same command (in this process) for three more steps, then a straight run to
    # the same step: the curves must be one.
    stop_at = k + 3
    original = Trainer.train_step

    def stop_after(self, micro):
        if self.step == stop_at - 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    monkeypatch.setattr(Trainer, "train_step", stop_after)
    args = ["--params", str(params_file), "--no-progress"]
    assert pretrain.main(args + run) == EXIT_INTERRUPTED
    got = loss_rows(tmp_path / "results")
    straight = tmp_path / "straight"
    assert pretrain.main(args + [*run, f"pretrain.out_dir={straight / 'models'}",
                                 f"pretrain.results_dir={straight / 'results'}"]) == EXIT_INTERRUPTED
    expected = loss_rows(straight / "results")
    assert [s for s, _ in got] == [s for s, _ in expected] == list(range(1, stop_at + 1))
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-6, rel=0)


def test_group_usr2_during_a_checkpoint_write_ends_in_that_checkpoint(tmp_path, params_file, overrides):
    # The checkpoint at step 4 (a rewrite of step 2's) pauses once complete, before its swap.
    proc, _ = group_run(tmp_path, params_file, overrides, "pretrain.steps=60", "pretrain.ckpt_every=2",
                        env={"SMAUG_CKPT_HOOK": "written:pause"})
    paused = tmp_path / "models" / "written.paused"
    wait_until(proc, tmp_path, lambda: paused.exists() or len(loss_rows(tmp_path / "results")) >= 6,
               "the checkpoint write")
    os.killpg(proc.pid, signal.SIGUSR2)  # what submitit sends before the time limit
    code, out = finish(proc, tmp_path)
    assert code == EXIT_INTERRUPTED, out
    assert "stopped by SIGUSR2 at step 4" in out, out
    state = read_state(tmp_path / "models" / "smaug")
    assert state["step"] == 4 and state["finished"] is False
    assert leftovers(tmp_path / "models") == []
    assert [s for s, _ in loss_rows(tmp_path / "results")] == [1, 2, 3, 4]


def test_a_launchers_handler_still_runs_and_is_given_back():
    """pipeline.launch.distributed handles submitit's USR2 (notes the requeue, forwards it to the
    trainer): the trainer records the stop and calls the launcher's handler too."""
    from train.signals import STOP

    seen = []

    def launcher(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGUSR2, launcher)
    try:
        with STOP:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert STOP.signum == signal.SIGUSR2 and seen == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is launcher
    finally:
        signal.signal(signal.SIGUSR2, previous)


LOADER_SCRIPT = """
import sys, time
import torch
from torch.utils.data import DataLoader, Dataset
from train.signals import STOP, blocked_in_new_workers, ignore_stop_signals

class Big(Dataset):
    def __len__(self): return 10_000
    def __getitem__(self, i): return torch.zeros(1_000_000)  # 4 MB: the workers fill the pipe

STOP.install()
with blocked_in_new_workers():
    it = iter(DataLoader(Big(), batch_size=4, num_workers=2, worker_init_fn=ignore_stop_signals, prefetch_factor=4))
next(it)
print(" ".join(str(w.pid) for w in it._workers), flush=True)
time.sleep(2)  # the workers block writing to the full pipe
if sys.argv[1] == "raise":
    raise KeyboardInterrupt  # a second Ctrl-C, or any error on the way out
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = next(x for x in open(f"/proc/{pid}/status") if x.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "Z" not in state  # a zombie has exited


def test_an_error_with_blocked_workers_still_ends_the_process(tmp_path):
    """multiprocessing's exit hook joined the workers without a limit after a SIGTERM they
    ignore: a Ctrl-C that raised KeyboardInterrupt hung the run for ever (it did, before)."""
    (tmp_path / "loader.py").write_text(LOADER_SCRIPT)
    proc = subprocess.run([sys.executable, "loader.py", "raise"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)
    assert proc.returncode == -signal.SIGINT, proc.stderr  # how Python ends on a KeyboardInterrupt (130 in a shell)
    workers = [int(p) for p in proc.stdout.split()]
    assert len(workers) == 2 and not any(alive(p) for p in workers)


def test_loader_workers_die_with_a_killed_main_process(tmp_path):
    (tmp_path / "loader.py").write_text(LOADER_SCRIPT)
    proc = subprocess.Popen([sys.executable, "loader.py", "sleep"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(p) for p in workers)
        proc.kill()  # SIGKILL, as the OOM killer: no handler, no exit hook runs
        proc.wait(30)
        deadline = time.time() + 30
        while any(alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in workers)  # they ignore every stop signal: only PDEATHSIG ends them
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_group_ctrl_c_with_two_workers_checkpoints_and_exits(tmp_path, params_file, overrides):
    proc, _ = group_run(tmp_path, params_file, overrides, "pretrain.steps=60")
    wait_until(proc, tmp_path, lambda: len(loss_rows(tmp_path / "results")) >= 1, "a first step")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the trainer and both loader workers
    code, out = finish(proc, tmp_path)
    assert code == EXIT_INTERRUPTED, out
    assert "stopped by SIGINT" in out and "Traceback" not in out, out
    k = read_state(tmp_path / "models" / "smaug")["step"]
    assert 1 <= k < 60 and [s for s, _ in loss_rows(tmp_path / "results")] == list(range(1, k + 1))


def test_a_second_ctrl_c_does_not_wait_for_the_step():
    from train.signals import StopRequest

    exits = []
    # a library's own handler (dask-jobqueue's exits the process) installed before the run
    previous = signal.signal(signal.SIGINT, lambda *_: exits.append(1))
    stop = StopRequest()
    try:
        with stop:
            stop._handle(signal.SIGINT, None)
            assert stop.signum == signal.SIGINT  # the first: recorded, the step finishes
            with pytest.raises(KeyboardInterrupt):
                stop._handle(signal.SIGINT, None)
            stop._handle(signal.SIGTERM, None)  # another signal after it changes nothing
            assert stop.signum == signal.SIGINT
    finally:
        signal.signal(signal.SIGINT, previous)
    assert exits == []  # not chained: a Ctrl-C is the run's to stop, saved


# --------------------------------------------------------------------------- SIGHUP: a hang-up
# A closed terminal or a dropped ssh session sends SIGHUP (`kill -HUP` too): the run stops as on
# SIGTERM, with a checkpoint, unless it was started under `nohup` (SIGHUP ignored). After a
# hang-up the terminal or pipe the run wrote to may be gone: writing to it must not cost the save.


def test_sighup_is_recorded_unless_it_was_ignored_at_the_start():
    from train.signals import StopRequest

    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with StopRequest() as stop:
            assert callable(signal.getsignal(signal.SIGHUP))  # else the signal below ends pytest
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop.signum == signal.SIGHUP
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # given back
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # started under nohup
        with StopRequest() as stop:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop.signum is None
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def hang_up_kills() -> None:
    """A child as a terminal starts it: SIGHUP at its default, whatever the test runner inherited
    (a suite started under `nohup` passes SIGHUP ignored to every child)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_group_sighup_mid_training_checkpoints_and_the_rerun_resumes(tmp_path, params_file, overrides):
    steps = 16
    proc, run = group_run(tmp_path, params_file, overrides, f"pretrain.steps={steps}", preexec_fn=hang_up_kills)
    wait_until(proc, tmp_path, lambda: len(loss_rows(tmp_path / "results")) >= 1, "a first step")
    os.killpg(proc.pid, signal.SIGHUP)  # the terminal closed: the trainer and both loader workers
    code, out = finish(proc, tmp_path)
    assert code == EXIT_INTERRUPTED, out
    assert "stopped by SIGHUP" in out and "Traceback" not in out and "DataLoader worker" not in out, out
    run_dir = tmp_path / "models" / "smaug"
    k = read_state(run_dir)["step"]
    assert 1 <= k < steps and read_state(run_dir)["interrupted"] is True
    assert [s for s, _ in loss_rows(tmp_path / "results")] == list(range(1, k + 1))

    # The same command again (in this process) resumes at step k and finishes the curve.
    assert pretrain.main(["--params", str(params_file), "--no-progress", *run]) == 0
    assert read_state(run_dir)["step"] == steps and read_state(run_dir)["finished"] is True
    assert [s for s, _ in loss_rows(tmp_path / "results")] == list(range(1, steps + 1))


def ignore_sighup() -> None:
    """What `nohup` does before it runs the program."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_a_run_started_under_nohup_trains_through_a_sighup(tmp_path, params_file, overrides):
    steps = 6
    run = [o for o in overrides(f"pretrain.steps={steps}") if not o.startswith("loader.num_workers=")]
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "train.pretrain", "--params", str(params_file), "--no-progress",
                             *run], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=ignore_sighup)
    wait_until(proc, tmp_path, lambda: catches(proc.pid, signal.SIGTERM), "handler installed")
    assert not catches(proc.pid, signal.SIGHUP)  # left ignored, as nohup set it
    wait_until(proc, tmp_path, lambda: len(loss_rows(tmp_path / "results")) >= 1, "a first step")
    os.killpg(proc.pid, signal.SIGHUP)
    code, out = finish(proc, tmp_path)
    assert code == 0, out
    assert read_state(tmp_path / "models" / "smaug")["finished"] is True
    assert [s for s, _ in loss_rows(tmp_path / "results")] == list(range(1, steps + 1))


def test_sighup_with_output_to_a_closed_pipe_still_checkpoints_and_exits_75(tmp_path, params_file, overrides):
    """`python -m train.pretrain ... | tee log` in a terminal that closes: `tee` is gone, every
    write to stdout/stderr (the progress bar, the stop message) fails with EPIPE."""
    run = [o for o in overrides("pretrain.steps=60") if not o.startswith("loader.num_workers=")]
    proc = subprocess.Popen([sys.executable, "-m", "train.pretrain", "--params", str(params_file), *run],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},  # progress bar on
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=hang_up_kills)
    try:
        wait_until(proc, tmp_path, lambda: len(loss_rows(tmp_path / "results")) >= 1, "a first step")
        proc.stdout.close()  # the reader goes first
        os.killpg(proc.pid, signal.SIGHUP)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED
    state = read_state(tmp_path / "models" / "smaug")
    assert state["interrupted"] is True and 1 <= state["step"] < 60
    assert leftovers(tmp_path / "models") == []


def test_a_hung_up_terminal_still_checkpoints_and_exits_75(tmp_path, params_file, overrides):
    """The run's controlling terminal (a pty here) hangs up, as when the ssh session drops: the
    kernel sends SIGHUP, and writes to the terminal fail with EIO from then on."""
    import fcntl
    import select
    import termios
    import threading

    master, slave = os.openpty()

    def take_terminal() -> None:  # in the child, after setsid: the pty becomes its terminal
        hang_up_kills()
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)

    run = [o for o in overrides("pretrain.steps=60") if not o.startswith("loader.num_workers=")]
    proc = subprocess.Popen([sys.executable, "-m", "train.pretrain", "--params", str(params_file), *run],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},  # progress bar on
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=take_terminal)
    os.close(slave)
    shown, stop_reading = [], threading.Event()

    def read_terminal() -> None:  # as the terminal would: the run never blocks on a full pty
        while not stop_reading.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    shown.append(os.read(master, 65536))
                except OSError:
                    return

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        wait_until(proc, tmp_path, lambda: len(loss_rows(tmp_path / "results")) >= 1, "a first step")
        stop_reading.set()
        reader.join(5)
        os.close(master)  # hang-up: SIGHUP to the run, its terminal gone
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = b"".join(shown).decode(errors="replace")
    assert proc.returncode == EXIT_INTERRUPTED, out
    state = read_state(tmp_path / "models" / "smaug")
    assert state["interrupted"] is True and 1 <= state["step"] < 60
    assert leftovers(tmp_path / "models") == []


LAST_WORDS_SCRIPT = """
import sys, time
from train.signals import STOP, tell

STOP.install()
print("ready", flush=True)
while STOP.signum is None:
    time.sleep(0.05)
tell("stopped by SIGHUP at step 3; checkpoint: models/smaug")  # the reader is gone: EPIPE
print("checkpoint: models/smaug")  # buffered: the interpreter's last flush meets the EPIPE
sys.exit(75)
"""


def test_last_words_to_a_closed_pipe_keep_exit_75(tmp_path):
    """What a program says after a stop must not change its exit code: an unflushed print to a
    pipe with no reader made the interpreter exit 1 (120 on some versions) instead of 75."""
    (tmp_path / "last_words.py").write_text(LAST_WORDS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as by default
    proc = subprocess.Popen([sys.executable, "last_words.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**env, "PYTHONPATH": str(REPO_ROOT)},
                            preexec_fn=hang_up_kills)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.stdout.close()
        proc.stderr.close()
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == EXIT_INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
