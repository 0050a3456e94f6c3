"""Faults of the machine during training stop with one ``error:`` line, keep (or write) a
checkpoint, and the same command resumes once the fault is gone; the run's metrics count the
whole run, not its last session.

Real faults where this machine can make them: a shard deleted under a running job with two
loader workers, a tmpfs that fills up (skipped where mounting is not allowed), a learning rate
that makes the loss overflow, a weights file cut short.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT
from tests.support import free_port
from tests.train.conftest import run_overrides
from train import pretrain
from train.checkpoint import read_state

# Runs pretrain.main(argv) in a child process with ``fault(trainer_step, base)`` called before
# each training step, so a fault can be made at a known step of a real run.
CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from train import pretrain
    from train.trainer import Trainer
    argv, at, fault, base = json.loads(sys.argv[1])
    if at is None:  # planted before the run starts (e.g. a shard read that will fail)
        exec(fault, {"base": Path(base), "Path": Path})
    original = Trainer.train_step
    def train_step(self, micro):
        if self.step == at:
            exec(fault, {"base": Path(base), "Path": Path})
        return original(self, micro)
    Trainer.train_step = train_step
    sys.exit(pretrain.main(argv))
""")


# Planted with at=None: the data stream of this process raises an I/O error (what the loader's
# ShardUnavailable is) when it is about to give batch B of epoch E (of rank R only, if given).
FAILING_READ = textwrap.dedent("""
    import errno, os
    import train.run as R
    def plant(epoch, batch, rank=None):
        if rank is not None and os.environ.get("RANK") != str(rank):
            return
        original = R.BatchStream.__iter__
        def batches(self):
            it = original(self)
            while True:
                if (self.epoch, self.batch) == (epoch, batch):
                    raise OSError(errno.EIO, f"Input/output error (planted) at epoch {epoch} batch {batch}")
                yield next(it)
        R.BatchStream.__iter__ = batches
""")


def run_child(base: Path, argv: list[str], *, at: int | None = -1, fault: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps([argv, at, fault, str(base)])],
                          cwd=base, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=300)


def error_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith("error:")]


def metrics_of(base: Path, name: str = "smaug") -> dict:
    return json.loads((base / "results" / "metrics" / f"pretrain-{name}.json").read_text())


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a real small file system that fills up, unmounted afterwards."""
    mounted = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_shard_deleted_mid_run_stops_it_and_the_same_command_resumes(tmp_path, params_file, pretrain_shards):
    """With two loader workers, a shard removed while the run reads another epoch: one error line
    naming it, exit 1, a checkpoint at the step reached (pretrain.ckpt_every=0: no other), and
    the rerun after restoring the shard trains the remaining steps; metrics count all 8."""
    shards = tmp_path / "shards"
    shutil.copytree(pretrain_shards, shards)
    gone = shards / "shard-000001.tar"
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, shards, "pretrain.steps=8", "loader.num_workers=2")]
    # 16 clips in batches of 4: steps 1-4 are epoch 0, which has the shard open already
    proc = run_child(tmp_path, argv, at=2, fault=f"Path({str(gone)!r}).rename({str(gone) + '.away'!r})")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "shard-000001.tar" in line and "cannot be read" in line and "rerun the same command" in line
    assert "Traceback" not in proc.stderr
    state = read_state(tmp_path / "models" / "smaug")
    assert not state["finished"] and 4 <= state["step"] < 8
    assert f"checkpoint of step {state['step']} written" in line
    assert not (tmp_path / "results" / "metrics" / "pretrain-smaug.json").exists()

    Path(str(gone) + ".away").rename(gone)
    proc = run_child(tmp_path, argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = metrics_of(tmp_path)
    assert metrics["steps"] == 8 and metrics["steps_this_session"] == 8 - state["step"]
    # the wall time of the first session (kept in the checkpoint) is in the whole run's
    assert state["train_wall_s"] > 0
    assert metrics["train_wall_s"] == pytest.approx(state["train_wall_s"] + metrics["train_wall_s_this_session"])
    assert f"pretrain smaug: 8 steps ({8 - state['step']} in this session)" in proc.stdout


def test_a_shard_gone_mid_step_checkpoints_the_steps_start(tmp_path, params_file, pretrain_shards):
    """pretrain.accum=3 over 8 batches an epoch: step 2 reads epoch 0's last two batches, then
    the first of epoch 1 finds the shards gone. The checkpoint of step 2 records the data
    position at the step's start, so the resumed run reads those two batches again: the whole
    run gives the trainer exactly 8 steps x 3 x 2 clips."""
    shards = tmp_path / "shards"
    shutil.copytree(pretrain_shards, shards)
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, shards, "pretrain.steps=8", "pretrain.accum=3", "loader.batch_size=2")]
    away = "".join(f"Path({str(t)!r}).rename({str(t) + '.away'!r})\n" for t in sorted(shards.glob("*.tar")))
    proc = run_child(tmp_path, argv, at=1, fault=away)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "reading the training data failed after step 2" in line
    assert "checkpoint of step 2 written" in line
    state = read_state(tmp_path / "models" / "smaug")
    assert state["step"] == 2 and not state["finished"]

    for t in shards.glob("*.away"):
        t.rename(str(t)[:-len(".away")])
    proc = run_child(tmp_path, argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = metrics_of(tmp_path)
    assert metrics["steps"] == 8
    assert sum(metrics["samples_per_source"].values()) == 8 * 3 * 2


def test_a_fault_in_the_first_step_of_a_resumed_run_keeps_the_steps_start(tmp_path, params_file, pretrain_shards):
    """pretrain reads one batch ahead (to count FLOPs). A resumed run whose first step fails on
    its second batch (accum=2) checkpoints the position before that read-ahead batch, so the
    run still gives the trainer exactly steps x accum x batch clips."""
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=4", "pretrain.accum=2", "loader.batch_size=2")]
    # step 3 (batches 4 and 5 of epoch 0) cannot read batch 4, then, resumed, batch 5
    assert run_child(tmp_path, argv, at=None, fault=FAILING_READ + "plant(0, 4)").returncode == 1
    assert read_state(tmp_path / "models" / "smaug")["step"] == 2
    proc = run_child(tmp_path, argv, at=None, fault=FAILING_READ + "plant(0, 5)")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "planted) at epoch 0 batch 5" in line and "checkpoint of step 2 written" in line
    proc = run_child(tmp_path, argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum(metrics_of(tmp_path)["samples_per_source"].values()) == 4 * 2 * 2


def run_ranks(base: Path, argv: list[str], *, at: int | None = -1, fault: str = "",
              all_ranks: bool = False) -> list[subprocess.CompletedProcess]:
    """``run_child`` on two gloo ranks (the env vars torchrun and submitit set); ``fault`` runs on
    rank 0 only, unless ``all_ranks``. A rank left waiting for the other would hit the timeout."""
    port, procs = free_port(), []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        code = fault if rank == 0 or all_ranks else ""
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([argv, at, code, str(base)])],
                                      cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    done = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a rank was still waiting 240 s after the fault")
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_a_shard_fault_on_one_rank_stops_every_rank_with_a_checkpoint(tmp_path, params_file, pretrain_shards):
    """Two gloo ranks read one shard each per epoch. One shard goes away during step 1, so in
    epoch 1 (step 2) one rank cannot read: both ranks stop at the same step with one error line
    each and exit 1 (none waits for the other), the checkpoint of step 2 is written, and the same
    command on both ranks resumes to the end, every clip counted once."""
    shards = tmp_path / "shards"
    shutil.copytree(pretrain_shards, shards)
    gone = shards / "shard-000001.tar"
    argv = ["--params", str(params_file), "--no-progress", "--device", "cpu",
            *run_overrides(tmp_path, shards, "pretrain.steps=6")]
    procs = run_ranks(tmp_path, argv, at=1, fault=f"Path({str(gone)!r}).rename({str(gone) + '.away'!r})")
    lines = []
    for proc in procs:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        [line] = error_lines(proc.stderr)
        assert "reading the training data failed after step 2" in line
        assert "checkpoint of step 2 written" in line and "Traceback" not in proc.stderr
        lines.append(line)
    assert sum("shard-000001.tar" in x for x in lines) >= 1  # the rank that could not read names it
    state = read_state(tmp_path / "models" / "smaug")
    assert state["step"] == 2 and not state["finished"]

    Path(str(gone) + ".away").rename(gone)
    for proc in run_ranks(tmp_path, argv):
        assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = metrics_of(tmp_path)
    assert metrics["steps"] == 6 and metrics["world_size"] == 2
    assert sum(metrics["samples_per_source"].values()) == 6 * 2 * 4


def uneven_shards(source: Path, dest: Path) -> Path:
    """The two test shards with the second cut to 6 clips plus one that cannot be decoded: an
    epoch gives one rank batches of 4 + 4 clips and the other 4 + 2 and one skip."""
    import tarfile

    shutil.copytree(source, dest)
    second = dest / "shard-000001.tar"
    with tarfile.open(second) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    keys = sorted({m.name.split(".")[0] for m, _ in members})
    keep, broken = keys[:6], keys[6]
    with tarfile.open(second, "w") as tar:
        for m, data in members:
            key = m.name.split(".")[0]
            if key in keep or key == broken:
                if key == broken and m.name.endswith(".mp4"):
                    data = b"\x00" * 64  # not a video: the loader skips this sample
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
    return dest


def test_a_ddp_resume_counts_every_clip_and_skip_once_when_ranks_epochs_differ(tmp_path, params_file,
                                                                                pretrain_shards):
    """Each epoch gives the two ranks 8 and 6 clips (and 1 skip): the checkpoint records the
    counts of both ranks, so the run stopped at step 2 and resumed counts what an uninterrupted
    run counts, 3 epochs x 14 clips and 3 skips. Before, every rank restarted from rank 0's
    count (44 or 40 clips)."""
    shards = uneven_shards(pretrain_shards, tmp_path / "shards")
    argv = ["--params", str(params_file), "--no-progress", "--device", "cpu",
            *run_overrides(tmp_path, shards, "pretrain.steps=6")]
    gone = shards / "shard-000000.tar"
    procs = run_ranks(tmp_path, argv, at=1, fault=f"Path({str(gone)!r}).rename({str(gone) + '.away'!r})")
    assert [p.returncode for p in procs] == [1, 1], procs[0].stderr + procs[1].stderr
    assert read_state(tmp_path / "models" / "smaug")["step"] == 2
    Path(str(gone) + ".away").rename(gone)
    for proc in run_ranks(tmp_path, argv):
        assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = metrics_of(tmp_path)
    assert metrics["steps"] == 6 and metrics["steps_this_session"] == 4
    assert sum(metrics["samples_per_source"].values()) == 3 * 14
    assert metrics["skipped_samples"] == 3


def test_a_fault_in_the_read_ahead_batch_of_one_rank_stops_every_rank(tmp_path, params_file, pretrain_shards):
    """Rank 1 cannot read the batch pretrain reads before training (to count FLOPs): rank 0,
    already waiting in its first step, stops too, and both exit 1 with one line."""
    argv = ["--params", str(params_file), "--no-progress", "--device", "cpu",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=4")]
    procs = run_ranks(tmp_path, argv, at=None, fault=FAILING_READ + "plant(0, 0, rank=1)", all_ranks=True)
    lines = []
    for proc in procs:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        [line] = error_lines(proc.stderr)
        assert "reading the training data failed after step 0" in line and "no checkpoint to write" in line
        lines.append(line)
    assert "planted" in lines[1] and "another rank failed (ranks that failed: 1;" in lines[0]


def test_a_checkpoint_rank_0_cannot_write_stops_every_rank(tmp_path, params_file, pretrain_shards):
    """The checkpoints' parent folder turns into a file on rank 0 before the step-2 checkpoint
    (an error outside the checkpoint writer's own): rank 1 does not wait for ever."""
    argv = ["--params", str(params_file), "--no-progress", "--device", "cpu",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=4", "pretrain.ckpt_every=2")]
    models = tmp_path / "models"
    # (the folder exists from the start: it holds the run's lock file beside the run folder)
    breaks = f"import shutil\nshutil.move({str(models)!r}, {str(models) + '.kept'!r})\nPath({str(models)!r}).write_text('')\n"
    procs = run_ranks(tmp_path, argv, at=1, fault=breaks)
    for proc in procs:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert len(error_lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr
    [line] = error_lines(procs[1].stderr)
    assert "checkpoint of step 2 not written (rank 0" in line


def test_a_training_log_fault_on_the_main_rank_stops_every_rank(tmp_path, params_file, pretrain_shards):
    """Only rank 0 writes the log: when it cannot, rank 1 stops at the same step too (exit 1,
    one error line each) and the checkpoint of the steps done is written."""
    argv = ["--params", str(params_file), "--no-progress", "--device", "cpu",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=6")]
    live = tmp_path / "results" / "dvclive" / "pretrain-smaug"
    breaks = f"import shutil\nshutil.move({str(live)!r}, {str(live) + '.kept'!r})\nopen({str(live)!r}, 'w').close()\n"
    for proc in run_ranks(tmp_path, argv, at=3, fault=breaks):
        assert proc.returncode == 1, proc.stdout + proc.stderr
        [line] = error_lines(proc.stderr)
        assert "writing the training log failed after step 4" in line
        assert "checkpoint of step 4 written" in line
    assert read_state(tmp_path / "models" / "smaug")["step"] == 4


def test_a_training_log_that_cannot_be_written_keeps_a_checkpoint(tmp_path, params_file, pretrain_shards):
    """The DVCLive folder replaced by a file at step 3 (ENOTDIR on the next write): the run
    checkpoints the steps it trained and stops with one line; the rerun resumes and finishes."""
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=6")]
    live = tmp_path / "results" / "dvclive" / "pretrain-smaug"
    breaks = f"import shutil\nshutil.move({str(live)!r}, {str(live) + '.kept'!r})\nopen({str(live)!r}, 'w').close()\n"
    proc = run_child(tmp_path, argv, at=3, fault=breaks)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "writing the training log failed after step" in line and "Not a directory" in line
    state = read_state(tmp_path / "models" / "smaug")
    assert state["step"] >= 4 and not state["finished"]
    assert f"checkpoint of step {state['step']} written" in line and "Traceback" not in proc.stderr

    live.unlink()
    Path(str(live) + ".kept").rename(live)
    proc = run_child(tmp_path, argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert metrics_of(tmp_path)["steps"] == 6


def test_a_log_fault_whose_checkpoint_fails_too_names_both(tmp_path, params_file, pretrain_shards):
    """The log folder and the checkpoint folder both become files at step 3 (one broken disk),
    with two loader workers: one line names the log fault and the failed checkpoint, exit 1,
    and the run does not hang at exit."""
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=6", "loader.num_workers=2")]
    live, models = tmp_path / "results" / "dvclive" / "pretrain-smaug", tmp_path / "models"
    breaks = (f"import shutil\nshutil.move({str(live)!r}, {str(live) + '.kept'!r})\n"
              f"open({str(live)!r}, 'w').close()\n"
              f"shutil.move({str(models)!r}, {str(models) + '.kept'!r})\nPath({str(models)!r}).write_text('')\n")
    proc = run_child(tmp_path, argv, at=3, fault=breaks)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "writing the training log failed after step 4" in line and "no checkpoint could be written" in line


def test_a_full_results_disk_at_the_end_loses_no_metrics(tmp_path, params_file, pretrain_shards, tmpfs):
    """The results disk fills during training: the run finishes, says the metrics file could not
    be written and that the checkpoint keeps it; the same command writes it once there is room."""
    results = tmpfs("1m")
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=4", f"pretrain.results_dir={results}")]
    fill = (f"f = open({str(results / 'ballast')!r}, 'wb')\n"
            "try:\n    f.write(b'x' * (4 << 20))\nexcept OSError:\n    pass\n"
            "try:\n    f.close()\nexcept OSError:\n    pass\n")
    proc = run_child(tmp_path, argv, at=2, fault=fill)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "pretrain-smaug.json: not written" in line and "No space left on device" in line
    assert "keeps these metrics" in line
    assert not list((results / "metrics").glob("*.tmp"))  # the partial write gave its space back
    assert read_state(tmp_path / "models" / "smaug")["finished"]

    (results / "ballast").unlink()
    proc = run_child(tmp_path, argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "written from the checkpoint" in proc.stdout
    metrics = json.loads((results / "metrics" / "pretrain-smaug.json").read_text())
    assert metrics["steps"] == 4 and metrics["clips_per_s"] > 0


def test_a_full_checkpoint_disk_is_one_error_line_and_leaves_no_temp_folder(tmp_path, params_file,
                                                                          pretrain_shards, tmpfs):
    models = tmpfs("256k")  # far less than the tiny model's weights
    argv = ["--params", str(params_file), "--no-progress",
            *run_overrides(tmp_path, pretrain_shards, "pretrain.steps=4", "pretrain.ckpt_every=2",
                           f"pretrain.out_dir={models}", "loader.num_workers=2")]
    proc = run_child(tmp_path, argv)  # with workers: a failed save that kept them alive would hang at exit
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the machine's fault: 1, as a requeue expects
    [line] = error_lines(proc.stderr)
    assert "checkpoint of step 2 not written" in line and "No space left on device" in line
    assert "no earlier checkpoint exists" in line and "two copies" in line
    assert list(models.iterdir()) == []  # the half-written temp folder gave its space back


def test_a_non_finite_loss_is_one_error_line(tmp_path, params_file, overrides, capsys):
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=4", "pretrain.lr=1e12", "pretrain.clip=0", "pretrain.warmup=0")]
    assert pretrain.main(argv) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert "non-finite" in line and "batch keys" in line and "lower pretrain.lr" in line


def test_a_finished_run_whose_weights_were_cut_short_is_not_reported_done(tmp_path, params_file, overrides,
                                                                          capsys):
    argv = ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=2")]
    assert pretrain.main(argv) == 0
    weights = tmp_path / "models" / "smaug" / "model.safetensors"
    # the weights follow the umask like the other files (safetensors alone would write 0600)
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~mask
    capsys.readouterr()
    assert pretrain.main(argv) == 0
    assert "already finished (2 steps)" in capsys.readouterr().out
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    assert pretrain.main(argv) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert "model.safetensors" in line and "cut short" in line and "--fresh" in line
    assert pretrain.main([*argv, "--fresh"]) == 0


def test_a_checkpoint_loads_after_its_text_tower_folder_moved(tmp_path, params_file, overrides, caplog):
    """The checkpoint keeps the tokenizer and config of its text tower (the weights are in
    model.safetensors already): moving the folder model.text.path named breaks nothing."""
    import torch

    from pipeline.text_encoder import default_text_encoder_dir
    from train.checkpoint import load_model
    from train.data.text import load_tokenizer
    from train.model import SMAUG

    bert = tmp_path / "bert"
    shutil.copytree(default_text_encoder_dir(), bert)
    argv = ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=2", f"model.text.path={bert}")]
    assert pretrain.main(argv) == 0
    folder = tmp_path / "models" / "smaug"
    before, _ = load_model(folder)
    shutil.rmtree(bert)
    with caplog.at_level("WARNING", logger="train.checkpoint"):
        after, state = load_model(folder)
    assert state["model_config"]["text"]["path"] == str(folder / "text")
    assert any(str(bert) in r.getMessage() for r in caplog.records)
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert torch.equal(a, b), name
    tokenizer = load_tokenizer(state["model_config"]["text"]["path"])
    assert tokenizer("a red circle spins")["input_ids"] == load_tokenizer(None)("a red circle spins")["input_ids"]
    assert isinstance(SMAUG.from_pretrained(folder), SMAUG)


def test_a_shard_missing_from_its_folder_is_an_error_not_a_smaller_run(tmp_path, params_file, overrides,
                                                                       pretrain_shards, capsys):
    """A folder listing cannot see a shard that is gone; preprocessing's stats_summary.json can."""
    from train.data.shards import expand_shards

    shards = tmp_path / "shards"
    shutil.copytree(pretrain_shards, shards)
    names = sorted(p.name for p in shards.glob("*.tar"))
    (shards / "stats_summary.json").write_text(json.dumps({"shards": names}))
    assert [Path(u).name for u in expand_shards(str(shards))] == names
    (shards / names[1]).rename(tmp_path / names[1])  # an incomplete copy of the folder
    with pytest.raises(FileNotFoundError, match=f"1 of the 2 shards .* {names[1]}"):
        expand_shards(str(shards))
    argv = ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=2", f"pretrain.shards={shards}")]
    assert pretrain.main(argv) == 2  # refused before any work, naming the shard
    [line] = error_lines(capsys.readouterr().err)
    assert names[1] in line and "restore" in line
    assert not (tmp_path / "models" / "smaug").exists()


def test_the_machine_reads_with_its_own_loader_settings(tmp_path):
    """What the model learnt from (frame size, frames, text length) comes from the checkpoint;
    how this machine reads (decoder backend, workers) from the command: a run pre-trained with
    the GPU decoder must be usable for evaluation on a CPU machine."""
    from train.checkpoint import loader_config_of

    state = {"loader_config": {"image_size": 32, "num_frames": 2, "max_len": 16, "backend": "dali",
                               "num_workers": 16, "batch_size": 4}}
    here = {"loader": {"image_size": 224, "num_frames": 8, "backend": "cpu", "num_workers": 2}}
    cfg = loader_config_of(state, here, num_frames=None, batch_size=3)
    assert (cfg.image_size, cfg.num_frames, cfg.max_len) == (32, 2, 16)
    assert (cfg.backend, cfg.num_workers, cfg.batch_size) == ("cpu", 2, 3)


def test_an_interrupted_run_resumes_after_its_text_tower_folder_moved(tmp_path, params_file, overrides,
                                                                      monkeypatch):
    import signal

    from pipeline.text_encoder import default_text_encoder_dir
    from train.trainer import EXIT_INTERRUPTED, Trainer

    old, new = tmp_path / "bert", tmp_path / "bert_moved"
    shutil.copytree(default_text_encoder_dir(), old)
    original = Trainer.train_step

    def stop_at_2(self, micro):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    def argv(path):
        return ["--params", str(params_file), "--no-progress", *overrides("pretrain.steps=4", f"model.text.path={path}")]

    monkeypatch.setattr(Trainer, "train_step", stop_at_2)
    assert pretrain.main(argv(old)) == EXIT_INTERRUPTED
    monkeypatch.setattr(Trainer, "train_step", original)
    old.rename(new)
    assert pretrain.main(argv(new)) == 0  # the same tower, elsewhere: resumed, not refused
    metrics = metrics_of(tmp_path)
    assert metrics["steps"] == 4 and metrics["steps_this_session"] == 2
    # the unchanged command resumes too, from the checkpoint's copy of the tower's vocabulary
    monkeypatch.setattr(Trainer, "train_step", stop_at_2)
    fresh_then_stopped = [*argv(new), "--run-name", "again"]
    assert pretrain.main(fresh_then_stopped) == EXIT_INTERRUPTED
    monkeypatch.setattr(Trainer, "train_step", original)
    new.rename(tmp_path / "bert_gone")
    assert pretrain.main(fresh_then_stopped) == 0
    assert metrics_of(tmp_path, "again")["steps"] == 4
    (tmp_path / "bert_gone").rename(new)
    # another tower at the new place is another run
    (new / "vocab.txt").write_text((new / "vocab.txt").read_text() + "extraword\n")
    with pytest.raises(Exception, match="other settings or data"):
        pretrain.train(pretrain.parse_args(argv(new)), pretrain.init_distributed(None))
