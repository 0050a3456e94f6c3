"""The launcher passes the wrapped program's arguments through untouched (local mode)."""

from __future__ import annotations

import json
import sys

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
