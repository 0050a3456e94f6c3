"""Every program takes settings one way and fails on a bad name the same way: `error: ...`, exit 2."""

from __future__ import annotations

import importlib

import pytest
import yaml

# module -> the arguments it needs besides the settings
ENTRY_POINTS = {
    "pipeline.synthetic.__main__": [],
    "preprocess.__main__": ["--annotations", "a.csv", "--videos", "v", "--out", "o"],
    "pipeline.launch.preprocess": ["--annotations", "a.csv", "--videos", "v", "--out", "o"],
    "preprocess.bench": [],
    "train.pretrain": [],
    "pipeline.launch.train": [],
    "train.finetune": ["--task", "qa"],
    "train.bench": [],
    "train.data.bench": [],
    "eval.evaluate": [],
    "eval.tables": [],
    "eval.ablation": [],
    "eval.benchmarks": ["overrides", "msrvtt_ret"],
}


def run(module: str, argv: list[str]) -> int:
    return importlib.import_module(module).main(argv)


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("bad, message", [
    ("pretrian.steps=3", "error: pretrian: unknown section (in override pretrian.steps=3); did you mean pretrain?"),
    ("preprocss.shard_samples=1", "error: preprocss: unknown section (in override preprocss.shard_samples=1); "
                                  "did you mean preprocess?"),
    ("model.masking.vidoe_ratio=0.9", "error: model.masking.vidoe_ratio: unknown key (in override "
                                      "model.masking.vidoe_ratio=0.9); did you mean video_ratio?"),
])
def test_a_misspelt_override_is_one_line_and_exit_2(module, bad, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written: if something were, it lands here
    assert run(module, [*ENTRY_POINTS[module], bad]) == 2
    err = capsys.readouterr().err
    assert err == message + "\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_a_misspelt_section_in_the_params_file(module, capsys, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\npretrian:\n  steps: 3\n")
    assert run(module, [*ENTRY_POINTS[module], "--params", str(params)]) == 2
    assert capsys.readouterr().err == f"error: pretrian: unknown section (in {params}); did you mean pretrain?\n"


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_print_config_prints_the_resolved_yaml(module, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(module, [*ENTRY_POINTS[module], "seed=7", "model.masking.video_ratio=0.9", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["model"]["masking"]["video_ratio"] == 0.9
    assert printed["pretrain"]["steps"] > 0  # everything else from params.yaml
    assert list(tmp_path.iterdir()) == []
