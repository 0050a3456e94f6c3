"""The launcher passes the wrapped program's arguments through untouched (local mode)."""

from __future__ import annotations

import json
import sys

import pytest

from pipeline.launch import train as launch_train


def test_program_flags_are_not_taken_for_abbreviations_of_ours(tmp_path, monkeypatch):
    # `--task` is a prefix of the launcher's `--tasks-per-node`; argparse's abbreviation
    # matching once swallowed it, breaking the finetune DVC stage.
    (tmp_path / "echo_entry.py").write_text(
        "import json, pathlib\n"
        "def main(argv):\n"
        f"    pathlib.Path({str(tmp_path / 'argv.json')!r}).write_text(json.dumps(argv))\n"
        "    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "echo_entry", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text("launch: {mode: local}\n")
    code = launch_train.main(["--launch", "local", "--entry", "echo_entry", "--nodes", "1",
                              "--tasks-per-node", "1", "--task", "retrieval", "--recipe", "smaug",
                              "--params", str(params)])
    assert code == 0
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[argv.index("--task") + 1] == "retrieval"
    assert argv[argv.index("--recipe") + 1] == "smaug"


def test_an_unknown_entry_is_one_error_line(capsys):
    # a typo in --entry once ended in a ModuleNotFoundError traceback (audit 2026-12-04, finding 11)
    code = launch_train.main(["--launch", "local", "--entry", "train.finetunee", "--task", "qa"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == "error: --entry: no module 'train.finetunee'; known: train.pretrain, train.finetune\n"
    assert launch_train.main(["--launch", "local", "--entry", "nosuch.module:main"]) == 2
    assert "error: --entry: no module 'nosuch.module';" in capsys.readouterr().err



@pytest.mark.slurm
def test_a_job_that_fails_on_the_node_with_its_own_error_passes_it_on(slurm_cluster, params_file, tiny_overrides,
                                                                      tmp_path, monkeypatch, capsys):
    """A pre-training job whose shards are not there fails on the node with its one `error:` line
    and exit 2 (its input): the launcher passes that line and status on, not a traceback and 1.
    A bad setting never reaches the queue: the program's own checks run before sbatch."""
    monkeypatch.chdir(tmp_path)

    def launch(logs: str, *extra: str) -> int:
        return launch_train.main([
            "--launch", "slurm", "--entry", "train.pretrain", "--params", str(params_file), *tiny_overrides,
            f"launch.log_dir={tmp_path / logs}", "launch.slurm.poll_s=1", "launch.slurm.cpus_per_task=1",
            "launch.slurm.timeout_min=5", "launch.slurm.signal_delay_s=30",
            f"pretrain.out_dir={tmp_path / 'models'}", f"pretrain.results_dir={tmp_path / 'results'}", *extra])

    code = launch("logs", f"pretrain.shards={tmp_path / 'no-shards'}")
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "no-shards" in lines[0] and "(log " in lines[0]
    # a bad value: refused here, before any job is submitted (no log folder made)
    assert launch("logs2", f"pretrain.shards={tmp_path / 'no-shards'}", "pretrain.lr=-1") == 2
    assert capsys.readouterr().err.startswith("error: pretrain.lr: must be > 0")
    assert not (tmp_path / "logs2").exists()
