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
    "train.ablation_bench": [],
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


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("content, message", [
    (b"seed: 0\npretrain: [\n", "not valid YAML at line 3"),
    (b"\xff\xfe\x00s\x00e\x00e\x00d", "not a YAML text file (not UTF-8"),
])
def test_a_params_file_that_is_not_yaml_is_one_line_and_exit_2(module, content, message, capsys, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_bytes(content)
    assert run(module, [*ENTRY_POINTS[module], "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {params}: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == [params]


@pytest.mark.parametrize("module", ["train.pretrain", "train.finetune", "eval.evaluate", "pipeline.synthetic.__main__"])
@pytest.mark.parametrize("bad, message", [
    ("seed=-1", "error: seed: must be in [0, 2**32), got -1"),
    ("seed=abc", "error: seed: expected int, got 'abc'"),
    ("seed=1.5", "error: seed: expected int, got 1.5"),
])
def test_a_bad_seed_is_named_before_any_work(module, bad, message, capsys, tmp_path, monkeypatch):
    """A negative seed used to pass and fail deep in the loader as 'the shards yielded no batch';
    finetune and evaluate read the top-level seed with int() (seed=1.5 ran as 1)."""
    monkeypatch.chdir(tmp_path)
    if module == "pipeline.synthetic.__main__":
        bad = "synthetic." + bad  # its own seed key
        message = message.replace("error: seed", "error: synthetic.seed")
    code = run(module, [*ENTRY_POINTS.get(module, []), bad, "--print-config"])
    assert code == 2
    assert capsys.readouterr().err.startswith(message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module, bad, message", [
    ("train.pretrain", "pretrain.lr=.inf", "error: pretrain.lr: expected a finite number, got inf"),
    ("train.pretrain", "loader.mean=[.nan,0.4,0.4]", "error: loader.mean[0]: expected a finite number, got nan"),
    ("train.finetune", "finetune.qa.head_lr_scale=.inf", "error: finetune.qa.head_lr_scale: expected a finite number"),
    ("eval.evaluate", "eval.tasks=[]", "error: eval.tasks: must name at least one of"),
    ("eval.evaluate", "eval.tasks=[retrieval,retrieval]", "error: eval.tasks: must not name a task twice"),
    ("eval.evaluate", "eval.seed=-3", "error: eval.seed: must be in [0, 2**32), got -3"),
    ("eval.ablation", "ablation.rows=[smaug,smaug,dense,dense-equal-time]", "error: ablation.rows: 'smaug' is named twice"),
    ("train.pretrain", "pretrain.steps=20", "error: pretrain.warmup: 80 must be in [0, steps=20)"),
    ("train.pretrain", "log.wandb=''", "error: log.wandb: must be a project name or null"),
    ("train.bench", "cost.preset=nope", "error: cost.preset: recipe: unknown recipe 'nope'"),
])
def test_values_that_would_fail_late_are_named_up_front(module, bad, message, capsys, tmp_path, monkeypatch):
    """Each of these used to pass the checks and fail later (a traceback after the model loaded,
    a NaN loss blamed on the rate, a run of nothing that overwrote the results, a timed benchmark
    spent first, a transcode that left a plan behind), or passed silently (inf in a scale)."""
    monkeypatch.chdir(tmp_path)
    flags = [] if module == "preprocess.__main__" else ["--print-config"]
    assert run(module, [*ENTRY_POINTS[module], bad, *flags]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_preprocess_flags_are_named_as_their_keys(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("preprocess.__main__", ["--print-config", "--workers", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: preprocess.workers: must be >= 1")
    assert run("preprocess.__main__", ["--print-config", "--shard-size", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: preprocess.shard_samples: must be >= 1")


@pytest.mark.parametrize("module", ["eval.evaluate", "train.finetune"])
def test_a_preset_problem_is_one_line(module, capsys, tmp_path, monkeypatch):
    """An unknown preset, or one whose shards are not made yet, used to end in a traceback (even
    with --print-config, which now shows the settings before the shards exist)."""
    monkeypatch.chdir(tmp_path)
    args = ENTRY_POINTS[module]
    assert run(module, [*args, "--preset", "nope", "--print-config"]) == 2
    assert capsys.readouterr().err.startswith("error: --preset nope: preset 'nope' not found")
    assert run(module, [*args, "--preset", "msrvtt_ret", "--print-config"]) == 0
    capsys.readouterr()
    assert run(module, [*args, "--preset", "msrvtt_ret", "eval.tasks=[retrieval]"]) == 2
    assert capsys.readouterr().err.startswith("error: --preset msrvtt_ret: preset msrvtt_ret: no shards at")


def test_an_empty_run_dir_is_refused_not_ignored(capsys, tmp_path, monkeypatch):
    """An unset "$RUN" in `--run-dir "$RUN"` used to be ignored, so outputs went to the committed
    results/ and models/."""
    monkeypatch.chdir(tmp_path)
    assert run("eval.tables", ["--run-dir", "", "--print-config"]) == 2
    assert capsys.readouterr().err == "error: --run-dir: must be a folder\n"


@pytest.mark.parametrize("module", ["train.finetune", "eval.evaluate"])
def test_settings_the_checkpoint_decides_are_said_to_be_unread(module, capsys, tmp_path, monkeypatch):
    """Fine-tuning and evaluation take the model and the loader's clip settings from the
    checkpoint: model.* and loader.batch_size given there used to be dropped without a word."""
    monkeypatch.chdir(tmp_path)
    args = [*ENTRY_POINTS[module], "model.video.depth=1", "loader.batch_size=3", "loader.num_workers=1"]
    assert run(module, [*args, "--print-config"]) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert [w.split()[1] for w in warnings] == ["model.video.depth", "loader.batch_size"]  # num_workers is read
