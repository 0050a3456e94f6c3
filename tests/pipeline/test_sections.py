"""A pipeline's first stage checks every section's values: `dvc repro` stops before any work on a
bad value that only a later stage reads (pipeline/sections.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import REPO_ROOT, ConfigError, load_params
from pipeline.sections import SECTION_TYPES, TOP_LEVEL_VALUES, check_every_section


def test_every_section_of_params_yaml_has_its_type():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert set(params) - set(TOP_LEVEL_VALUES) == set(SECTION_TYPES)
    assert set(TOP_LEVEL_VALUES) <= set(params)


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (REPO_ROOT / "pipeline" / "recipes").glob("*.yaml")))
def test_the_committed_params_pass_with_every_recipe(recipe):
    import torch  # noqa: F401  (the model section is checked where torch is loaded)

    params = load_params(REPO_ROOT / "params.yaml", recipe=recipe)
    assert check_every_section(params) == list(SECTION_TYPES)


@pytest.mark.parametrize("bad, key", [
    ("eval.retrieval.rerank_k=-1", "eval.retrieval.rerank_k"),
    ("finetune.qa.lr=-0.1", "finetune.qa.lr"),
    ("ablation.bootstrap=-5", "ablation.bootstrap"),
    ("launch.slurm.nodes=0", "launch.slurm.nodes"),
    ("seed=-1", "seed"),
    ("deterministic=maybe", "deterministic"),
])
def test_check_names_the_bad_key(bad, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        check_every_section(load_params(REPO_ROOT / "params.yaml", overrides=[bad]))


def test_generate_under_dvc_stops_on_a_later_stage_value_before_any_work(tmp_path):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["eval"]["retrieval"]["rerank_k"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "pipeline.synthetic", "--params", "params.yaml", "--no-progress",
           f"synthetic.out_dir={tmp_path / 'out'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "DVC_STAGE": "generate"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: eval.retrieval.rerank_k: must be >= 0 (0 disables VTM re-ranking)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    # by hand the generator reads its own section only, as before
    by_hand = subprocess.run([*cmd, "--print-config"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert by_hand.returncode == 0, by_hand.stderr
