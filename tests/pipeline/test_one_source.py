"""params.yaml is the one source of every default; recipes state only what differs from it."""

from __future__ import annotations

import pytest
import yaml

from pipeline.config import (DEFAULT_PARAMS, RECIPES_DIR, load_yaml, section, to_dict, top_level_deterministic,
                             top_level_seed)
from pipeline.sections import TOP_LEVEL_VALUES

SECTIONS = {
    "synthetic": "pipeline.synthetic.config:SyntheticConfig",
    "preprocess": "preprocess.config:PreprocessConfig",
    "loader": "train.data.config:LoaderConfig",
    "model": "train.model.config:ModelConfig",
    "pretrain": "train.config:PretrainConfig",
    "cost": "train.config:CostConfig",
    "log": "train.config:LogConfig",
    "finetune": "train.config:FinetuneConfig",
    "eval": "eval.config:EvalConfig",
    "tables": "eval.config:TablesConfig",
    "ablation": "eval.config:AblationConfig",
    "launch": "pipeline.launch.config:LaunchConfig",
}


def _cls(spec: str):
    module, name = spec.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _normal(value):
    """YAML and dataclass spellings of one value compare equal (tuples vs lists, 1 vs 1.0)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def test_every_section_of_params_has_a_dataclass():
    assert set(load_yaml(DEFAULT_PARAMS)) == set(SECTIONS) | set(TOP_LEVEL_VALUES)


def test_top_level_defaults_equal_params_yaml():
    """A params file without them gets what params.yaml says."""
    params = load_yaml(DEFAULT_PARAMS)
    assert top_level_seed({}) == params["seed"]
    assert top_level_deterministic({}) is params["deterministic"]


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_dataclass_defaults_equal_params_yaml(name):
    params = load_yaml(DEFAULT_PARAMS)
    defaults = _normal(to_dict(section({}, _cls(SECTIONS[name]), name)))
    written = _normal(params[name])
    differ = {k: (defaults.get(k), written.get(k)) for k in set(defaults) | set(written)
              if defaults.get(k) != written.get(k)}
    assert not differ, f"{name}: dataclass default vs params.yaml differ: {differ}"


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
def test_recipes_state_only_what_differs(recipe):
    base = dict(_leaves(load_yaml(DEFAULT_PARAMS)))
    overlay = yaml.safe_load((RECIPES_DIR / f"{recipe}.yaml").read_text())
    overlay.pop("description")
    restated = [k for k, v in _leaves(overlay) if k in base and _normal(base[k]) == _normal(v)]
    assert not restated, f"{recipe}.yaml restates params.yaml's values of {restated}"
