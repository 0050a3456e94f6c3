"""A training run as a DVC stage (``--as-stage``, outputs persisted): `dvc repro` after an
interruption resumes the run (or keeps it, finished) when its settings, data and code are
unchanged, and otherwise starts over, as DVC means a stage run to (train/run.py's module doc).

Without persist, DVC deletes a stage's outputs before running it, so a killed `dvc repro`
lost every checkpoint of the pre-training it was running (checked below on the real DVC).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import time
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import REPO_ROOT
from tests.train.conftest import TINY, run_overrides, sigusr1_at
from train import pretrain
from train import run as train_run
from train.checkpoint import read_state
from train.run import code_fingerprint
from train.trainer import EXIT_INTERRUPTED, Trainer


def session_steps(folder: Path) -> int:
    """Steps the checkpoint's last session trained (a run trained in one session has no split)."""
    summary = read_state(folder)["summary"]
    return summary.get("steps_this_session", summary["steps"])


def loss_steps(base: Path) -> list[int]:
    path = base / "results" / "dvclive" / "pretrain-smaug" / "plots" / "metrics" / "train" / "loss.tsv"
    with path.open() as f:
        return [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")]


def run(base, params_file, shards, caplog, *extra, stage=True):
    caplog.clear()
    with caplog.at_level("INFO", logger="train"):
        code = pretrain.main(["--params", str(params_file), "--no-progress", *(["--as-stage"] if stage else []),
                              *run_overrides(base, shards, "pretrain.steps=5", *extra)])
    messages = [r.getMessage() for r in caplog.records]
    return code, messages


@pytest.fixture(scope="module")
def stopped_at_2(tmp_path_factory, params_file, pretrain_shards):
    """A 5-step stage run stopped (SIGUSR1) with its checkpoint at step 2."""
    base = tmp_path_factory.mktemp("stage_stopped")
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setattr(Trainer, "train_step", sigusr1_at(1))
        code = pretrain.main(["--params", str(params_file), "--no-progress", "--as-stage",
                              *run_overrides(base, pretrain_shards, "pretrain.steps=5")])
    os.chdir(cwd)
    assert code == EXIT_INTERRUPTED
    state = read_state(base / "models" / "smaug")
    assert state["step"] == 2 and not state.get("finished") and state["code"] == code_fingerprint()
    return base


@pytest.fixture
def stopped(tmp_path, stopped_at_2):
    for part in ("models", "results"):
        shutil.copytree(stopped_at_2 / part, tmp_path / part)
    return tmp_path


def test_stage_resumes_an_interrupted_run_of_the_same_settings_and_code(stopped, params_file, pretrain_shards,
                                                                        caplog):
    code, messages = run(stopped, params_file, pretrain_shards, caplog)
    assert code == 0
    assert any(m.startswith("resumed") and "at step 2" in m for m in messages), messages
    assert not any("starting over" in m for m in messages)
    assert session_steps(stopped / "models" / "smaug") == 3
    assert loss_steps(stopped) == [1, 2, 3, 4, 5]  # the persisted curve goes on, each step once


def test_stage_keeps_a_finished_run_of_the_same_settings_and_code(stopped, params_file, pretrain_shards, caplog):
    assert run(stopped, params_file, pretrain_shards, caplog)[0] == 0
    metrics = stopped / "results" / "metrics" / "pretrain-smaug.json"
    metrics.unlink()  # DVC deletes a stage's unpersisted outputs before it runs the stage again
    # DVC also reruns a stage whose lock entry was never written (a `dvc repro` killed while it
    # hashed the outputs): the same training need not run again
    code, messages = run(stopped, params_file, pretrain_shards, caplog)
    assert code == 0
    assert any("already finished" in m for m in messages) and not any("starting over" in m for m in messages)
    assert session_steps(stopped / "models" / "smaug") == 3  # the checkpoint of the resumed run, untouched
    assert metrics.is_file()  # written again from the checkpoint


def test_stage_starts_over_a_finished_run_of_other_settings(stopped, params_file, pretrain_shards, caplog):
    assert run(stopped, params_file, pretrain_shards, caplog)[0] == 0
    code, messages = run(stopped, params_file, pretrain_shards, caplog, "pretrain.lr=0.0005")
    assert code == 0
    assert any("starting over" in m and "pretrain.lr" in m for m in messages), messages
    state = read_state(stopped / "models" / "smaug")
    assert state["finished"] and session_steps(stopped / "models" / "smaug") == 5
    assert loss_steps(stopped) == [1, 2, 3, 4, 5]  # a new curve, not the old one continued
    # the run it replaced is kept aside (one), and by hand the finished run is left as it is
    assert read_state(stopped / "models" / ".smaug.previous")["identity"]["config"]["pretrain"]["lr"] != 0.0005
    code, messages = run(stopped, params_file, pretrain_shards, caplog, "pretrain.lr=0.0005", stage=False)
    assert code == 0 and any("already finished" in m for m in messages)


def test_stage_starts_over_when_the_settings_differ(stopped, params_file, pretrain_shards, caplog):
    # by hand, other settings are refused (the run would mix them) ...
    code, _ = run(stopped, params_file, pretrain_shards, caplog, "pretrain.lr=0.0005", stage=False)
    assert code == 2
    # ... while the stage, which DVC reran because a param changed, trains them from step 0
    code, messages = run(stopped, params_file, pretrain_shards, caplog, "pretrain.lr=0.0005")
    assert code == 0
    assert any("starting over" in m and "pretrain.lr" in m for m in messages), messages
    state = read_state(stopped / "models" / "smaug")
    assert session_steps(stopped / "models" / "smaug") == 5
    assert state["identity"]["config"]["pretrain"]["lr"] == 0.0005
    assert read_state(stopped / "models" / ".smaug.previous")["step"] == 2  # the interrupted run, aside


def test_stage_starts_over_when_the_code_changed(stopped, params_file, pretrain_shards, caplog, monkeypatch):
    monkeypatch.setattr(train_run, "code_fingerprint", lambda: "edited")
    code, messages = run(stopped, params_file, pretrain_shards, caplog)
    assert code == 0
    assert any("starting over" in m and "code under train/ or pipeline/*.py changed" in m for m in messages), messages
    state = read_state(stopped / "models" / "smaug")
    assert session_steps(stopped / "models" / "smaug") == 5 and state["code"] == "edited"


def test_a_run_resumed_by_hand_with_other_code_is_not_resumed_by_a_stage(stopped, params_file, pretrain_shards,
                                                                         caplog, monkeypatch):
    with monkeypatch.context() as mp:  # by hand, after an edit: resumes (the user's choice) ...
        mp.setattr(train_run, "code_fingerprint", lambda: "edited")
        mp.setattr(Trainer, "train_step", sigusr1_at(3))
        code, messages = run(stopped, params_file, pretrain_shards, caplog, stage=False)
    assert code == EXIT_INTERRUPTED and any(m.startswith("resumed") for m in messages)
    assert read_state(stopped / "models" / "smaug")["code"] == "changed during the run"
    # ... and the checkpoint says so: no stage takes its steps as the code's of either version
    code, messages = run(stopped, params_file, pretrain_shards, caplog)
    assert code == 0 and any("starting over" in m for m in messages), messages


def test_code_fingerprint_follows_the_source_files(tmp_path):
    (tmp_path / "train" / "sub").mkdir(parents=True)
    (tmp_path / "train" / "sub" / "a.py").write_text("x = 1\n")
    (tmp_path / "pipeline" / "synthetic").mkdir(parents=True)
    (tmp_path / "pipeline" / "config.py").write_text("a = 1\n")
    first = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == first
    (tmp_path / "train" / "sub" / "__pycache__").mkdir()
    (tmp_path / "train" / "sub" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "train" / "notes.txt").write_text("not code")
    (tmp_path / "pipeline" / "synthetic" / "render.py").write_text("# the generator, not the trainer\n")
    (tmp_path / "pipeline" / "mine.yaml").write_text("a recipe: in the run's identity, not its code\n")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "b.py").write_text("y = 2\n")
    assert code_fingerprint(tmp_path) == first
    (tmp_path / "pipeline" / "config.py").write_text("a = 2\n")
    second = code_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "train" / "sub" / "a.py").rename(tmp_path / "train" / "sub" / "b.py")
    assert code_fingerprint(tmp_path) != second  # a renamed module is another program


@pytest.mark.slow
def test_dvc_repro_after_a_kill_resumes_the_training(tmp_path, params_file, pretrain_shards):
    """The real DVC: a stage killed by SIGKILL mid-training (inside its step-4 checkpoint write)
    resumes from step 2 at the next `dvc repro`; a changed param then retrains from step 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    dvc = lambda *a, **kw: subprocess.run(["dvc", *a], cwd=tmp_path, capture_output=True, text=True,
                                          timeout=600, env={**env, **kw.get("env", {})})
    assert dvc("init", "--no-scm", "-q").returncode == 0
    shutil.copy(params_file, tmp_path / "params.yaml")
    overrides = [o for o in TINY if not o.startswith("pretrain.ckpt_every")]
    cmd = " ".join([sys.executable, "-m", "train.pretrain", "--params", "params.yaml", "--no-progress", "--as-stage",
                    *overrides, f"pretrain.shards={pretrain_shards}", "pretrain.out_dir=models",
                    "pretrain.results_dir=results", "pretrain.steps=6", "pretrain.ckpt_every=2"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pretrain": {
        "cmd": cmd, "params": ["pretrain.lr"],
        "outs": [{"models/smaug": {"persist": True}}],
        "metrics": [{"results/metrics/pretrain-smaug.json": {"cache": False}}],
        "plots": [{"results/dvclive/pretrain-smaug/plots/metrics": {"cache": False, "persist": True}}]}}}))

    killed = dvc("repro", env={"SMAUG_CKPT_HOOK": "partial:kill"})
    assert killed.returncode != 0 and not (tmp_path / "dvc.lock").exists(), killed.stdout + killed.stderr
    assert read_state(tmp_path / "models" / "smaug")["step"] == 2

    resumed = dvc("repro")
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out
    assert "resumed" in out and "at step 2" in out and "starting over" not in out
    state = read_state(tmp_path / "models" / "smaug")
    assert state["finished"] and state["step"] == 6 and session_steps(tmp_path / "models" / "smaug") == 4
    assert loss_steps(tmp_path) == [1, 2, 3, 4, 5, 6]
    assert "up to date" in dvc("status").stdout

    # a `dvc repro` killed after the training, before its lock entry: the rerun keeps the run
    (tmp_path / "dvc.lock").unlink()
    kept = dvc("repro")
    out = kept.stdout + kept.stderr
    assert kept.returncode == 0 and "already finished" in out and "starting over" not in out, out
    assert session_steps(tmp_path / "models" / "smaug") == 4 and "up to date" in dvc("status").stdout

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["pretrain"]["lr"] = 0.0005
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    again = dvc("repro")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "starting over" in out and "pretrain.lr" in out
    state = read_state(tmp_path / "models" / "smaug")
    assert session_steps(tmp_path / "models" / "smaug") == 6 and state["identity"]["config"]["pretrain"]["lr"] == 0.0005
    assert loss_steps(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_a_stage_checks_the_later_stages_settings_before_training(tmp_path, params_file, pretrain_shards, capsys):
    bad = run_overrides(tmp_path, pretrain_shards, "pretrain.steps=2", "eval.retrieval.rerank_k=-1")
    assert pretrain.main(["--params", str(params_file), "--no-progress", "--as-stage", *bad]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: eval.retrieval.rerank_k: must be >= 0 (0 disables VTM re-ranking)")
    assert not (tmp_path / "models").exists()
    # by hand, pre-training reads its own sections only
    assert pretrain.main(["--params", str(params_file), "--no-progress", *bad]) == 0
    # and so does --print-config, the SLURM launcher's check before it submits the job
    assert pretrain.main(["--params", str(params_file), "--as-stage", "--print-config", *bad]) == 2
    assert pretrain.main(["--params", str(params_file), "--print-config", *bad]) == 0


def test_a_stage_starts_over_a_run_whose_checkpoint_cannot_be_read(stopped, params_file, pretrain_shards, caplog):
    weights = stopped / "models" / "smaug" / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    # by hand: one line naming the file (and --fresh); as a stage, which cannot pass --fresh, it
    # must not block every `dvc repro`: it starts over
    code, messages = run(stopped, params_file, pretrain_shards, caplog)
    assert code == 0
    assert any("starting over" in m and "cannot be read" in m for m in messages), messages
    assert session_steps(stopped / "models" / "smaug") == 5


def test_a_second_training_on_the_same_run_is_refused(stopped, params_file, pretrain_shards, capsys):
    """A `dvc repro` killed while its training went on, then rerun: two trainings resumed one
    folder and wrote its checkpoints and curve in turn. The second now stops, naming the first."""
    run = run_overrides(stopped, pretrain_shards, "pretrain.steps=100000")
    first = subprocess.Popen([sys.executable, "-m", "train.pretrain", "--params", str(params_file), "--no-progress",
                              "--as-stage", *run], cwd=stopped, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lock = stopped / "models" / ".smaug.lock"
        deadline = time.time() + 120
        while not (lock.exists() and str(first.pid) in lock.read_text()) and time.time() < deadline:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.1)
        code = pretrain.main(["--params", str(params_file), "--no-progress", "--as-stage", *run])
        assert code == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"error: {stopped / 'models' / 'smaug'}: this run is being written by pid {first.pid}")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    # the kernel released the killed holder's lock: the same command now resumes
    code = pretrain.main(["--params", str(params_file), "--no-progress", "--as-stage",
                          *run_overrides(stopped, pretrain_shards, "pretrain.steps=5")])
    assert code == 0
