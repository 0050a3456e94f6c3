"""The repository's own wiring: params.yaml valid, dvc.yaml current, CI runs the README's tests,
and the first DVC stages really run under `dvc repro` on a tiny synthetic set."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import load_params, section
from pipeline.sections import TOP_LEVEL_VALUES

ROOT = Path(__file__).resolve().parents[2]


def _sections():
    from eval.config import AblationConfig, EvalConfig, TablesConfig
    from train.config import CostConfig, FinetuneConfig, LogConfig
    from pipeline.launch.config import LaunchConfig
    from pipeline.synthetic.config import SyntheticConfig
    from preprocess.config import PreprocessConfig
    from train.config import PretrainConfig
    from train.data.config import LoaderConfig
    from train.model.config import ModelConfig

    return {
        "synthetic": SyntheticConfig, "preprocess": PreprocessConfig, "loader": LoaderConfig,
        "model": ModelConfig, "pretrain": PretrainConfig, "finetune": FinetuneConfig,
        "eval": EvalConfig, "tables": TablesConfig, "ablation": AblationConfig, "launch": LaunchConfig, "cost": CostConfig,
        "log": LogConfig,
    }


def test_params_yaml_builds_every_section_and_nothing_else():
    params = load_params(ROOT / "params.yaml")
    classes = _sections()
    assert set(params) == set(classes) | set(TOP_LEVEL_VALUES)
    for name, cls in classes.items():
        section(params, cls, name)  # raises ConfigError naming the key on a bad value


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (ROOT / "pipeline/recipes").glob("*.yaml")))
def test_every_recipe_overlays_valid_params(recipe):
    params = load_params(ROOT / "params.yaml", recipe=recipe)
    for name, cls in _sections().items():
        section(params, cls, name)


def test_git_ignores_what_a_training_leaves_beside_its_run_folder():
    """The run lock and the run a stage moved aside hold checkpoints: `git add -A` must not take
    them (DVC's own .gitignore lines name only the run folders)."""
    from train.run import previous_run_folder

    run = Path("models/ablation/smaug-seed1")
    paths = [str(previous_run_folder(run) / "model.safetensors"), str(run.parent / f".{run.name}.lock"),
             str(previous_run_folder(Path("models/finetune/smaug/qa")) / "optim.pt")]
    found = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout.split() == paths
    kept = subprocess.run(["git", "check-ignore", "train/run.py", "dvc.lock"], cwd=ROOT, capture_output=True, text=True)
    assert kept.stdout == ""  # nothing the project tracks


def test_every_ablation_run_keeps_its_weights_out_of_git():
    """Each run of ablation/dvc.yaml writes a checkpoint folder of ~180 MB under models/ablation/
    (no stage declares it: the numbers are kept, not the weights); `git add -A` after a run must
    not pick one up. mask-no-mvm's seeds once were not ignored."""
    import yaml

    stages = yaml.safe_load((ROOT / "ablation" / "dvc.yaml").read_text())["stages"]
    runs = [item["run"] for item in stages["eval-zero-shot"]["foreach"].values()]
    assert len(runs) >= 14
    paths = [f"models/ablation/{run}/model.safetensors" for run in runs]
    found = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout.split() == paths


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "bash scripts/setup.sh --test && python3 -m pytest -q" in readme
    assert "bash scripts/setup.sh --test" in ci and "python3 -m pytest -q" in ci
    assert "bash scripts/setup.sh && dvc repro" in readme


@pytest.mark.parametrize("flags", [[], ["--test"]])
def test_both_setup_commands_walk_through(flags):
    """README's two set-up commands get to the end (a dry run: same decisions, nothing installed).

    Guards the script itself: under `set -e` one failing test in the wrong place ends it
    before anything is installed, which is how `bash scripts/setup.sh` once broke."""
    done = subprocess.run(["bash", "scripts/setup.sh", "--dry-run", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "[setup] done"
    extras = ".[test,dali]" if flags else "'.'"
    assert any(extras in line for line in lines) or "python packages up to date" in done.stdout
    bad = subprocess.run(["bash", "scripts/setup.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr


@pytest.mark.slow
def test_dvc_repro_runs_generate_ingest_and_shard(tmp_path):
    """The real `dvc repro` on a 12-clip benchmark: stages run, outputs appear, a rerun is a no-op."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    work = tmp_path / "repo"
    work.mkdir()
    for name in ["pipeline", "preprocess", "train", "eval"]:
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["dvc.yaml", ".dvcignore"]:
        shutil.copy(ROOT / name, work / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"].update(num_clips=12, duration_range=[2.0, 2.5], pretrain_clips=3)
    params["preprocess"].update(shard_samples=4, cache_dir=None)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def run(*cmd):
        return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)

    assert run("git", "init", "-q").returncode == 0
    assert run(sys.executable, "-m", "dvc", "init", "-q").returncode == 0
    first = run(sys.executable, "-m", "dvc", "repro", "shard@pretrain")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    for stage in ["generate", "ingest@pretrain", "shard@pretrain"]:
        assert f"Running stage '{stage}'" in first.stdout

    shards = sorted((work / "data/shards/pretrain").glob("shard-*.tar"))
    stats = pq.read_table(work / "data/shards/pretrain/stats.parquet").to_pandas()
    meta = json.loads((work / "data/raw/synthetic/meta.json").read_text())
    train_clips = {c["stem"] for c in meta["clips"] if c["split"] == "train"}
    extra_clips = {c["stem"] for c in meta["pretrain_clips"]}
    assert len(extra_clips) == 3 and not extra_clips & train_clips
    train_clips |= extra_clips  # synthetic.pretrain_clips reach the pre-training shards too
    assert shards, "no shards written"
    assert set(stats.loc[stats.status == "ok", "key"]) == train_clips
    assert (stats.status == "ok").all()

    again = run(sys.executable, "-m", "dvc", "repro", "shard@pretrain")
    assert again.returncode == 0
    assert "Running stage" not in again.stdout


def test_readme_lists_every_benchmark_preset_and_eval_task():
    """The README's tables of benchmarks name each preset (with its card) and each eval task."""
    from eval.benchmarks import available
    from eval.config import EVAL_TASKS

    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for name in available():
        assert any(f"`{name}`" in line.split("|")[1] for line in rows), f"README lists no preset {name}"
    for task in EVAL_TASKS:
        assert any(line.split("|")[1].strip() == f"`{task}`" for line in rows), f"README lists no eval task {task}"
