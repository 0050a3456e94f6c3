"""The config machinery every part uses: names in errors, types, recipes, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pipeline.config import (
    ConfigError,
    build,
    check,
    deep_merge,
    load_params,
    parse_override,
    section,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    ratio: float = 0.5
    layers: list[int] = field(default_factory=lambda: [1, 2])

    def __post_init__(self):
        check(0.0 <= self.ratio < 1.0, "ratio", f"must be in [0, 1), got {self.ratio}")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    mode: Literal["random", "tube"] = "random"
    steps: int = 10
    out: Path = Path("out")
    maybe: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested_values():
    cfg = build(Outer, {"steps": 3, "inner": {"ratio": 0.25, "layers": [4]}}, "sec")
    assert cfg.steps == 3 and cfg.inner.ratio == 0.25 and cfg.inner.layers == [4]
    assert cfg.mode == "random" and cfg.out == Path("out")
    assert to_dict(cfg)["out"] == "out"


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"steps": "ten"}, "sec.steps: expected int"),
        ({"steps": True}, "sec.steps: expected int"),
        ({"mode": "grid"}, "sec.mode: 'grid' is not one of"),
        ({"bogus": 1}, "sec.bogus: unknown key"),
        ({"inner": {"ratio": 1.5}}, "sec.inner.ratio: must be in [0, 1)"),
        ({"inner": {"layers": [1, "two"]}}, "sec.inner.layers[1]: expected int"),
        ({"inner": 3}, "sec.inner: expected a mapping"),
        ({"maybe": "no"}, "sec.maybe: expected int"),
        ({"inner": {"ratio": "half"}}, "sec.inner.ratio: expected a number"),
        ({"inner": {"ratio": "nan"}}, "sec.inner.ratio: expected a number"),
    ],
)
def test_bad_values_are_rejected_with_their_name(data, expected):
    with pytest.raises(ConfigError) as err:
        build(Outer, data, "sec")
    assert str(err.value).startswith(expected), str(err.value)


def test_optional_accepts_none_and_int():
    assert build(Outer, {"maybe": None}, "s").maybe is None
    assert build(Outer, {"maybe": 4}, "s").maybe == 4


def test_overrides_and_recipes_merge(tmp_path):
    from train.model import ModelConfig

    params = tmp_path / "params.yaml"
    params.write_text("model:\n  embed_dim: 128\n  masking:\n    video_ratio: 0.1\n")
    data = load_params(params, overrides=["model.masking.video_ratio=0.3", "model.masking.video_mode=tube"])
    cfg = section(data, ModelConfig, "model")
    assert (cfg.embed_dim, cfg.masking.video_ratio, cfg.masking.video_mode) == (128, 0.3, "tube")
    dense = section(load_params(params, recipe="dense"), ModelConfig, "model")
    assert (dense.embed_dim, dense.masking.video_ratio, dense.sparsify.enabled) == (128, 0.0, False)
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    with pytest.raises(ConfigError, match="override must look like"):
        parse_override("no-equals-sign")


def test_exponent_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 3e-4 as a string; on the command line people write it that way
    from train.config import PretrainConfig

    params = tmp_path / "params.yaml"
    params.write_text("pretrain: {}\n")
    cfg = section(load_params(params, overrides=["pretrain.lr=3e-4"]), PretrainConfig, "pretrain")
    assert cfg.lr == pytest.approx(3e-4)


def test_unknown_recipe_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; known recipes: dense, "):
        load_params(recipe="nope")


@pytest.mark.parametrize("text, where, message", [
    ("pretrian:\n  steps: 3\n", "file", "pretrian: unknown section (in {file}); did you mean pretrain?"),
    ("model:\n  masking:\n    vidoe_ratio: 0.9\n", "file",
     "model.masking.vidoe_ratio: unknown key (in {file}); did you mean video_ratio?"),
    ("pretrian.steps=3", "override", "pretrian: unknown section (in override pretrian.steps=3); did you mean pretrain?"),
    ("model.masking.vidoe_ratio=0.9", "override",
     "model.masking.vidoe_ratio: unknown key (in override model.masking.vidoe_ratio=0.9); did you mean video_ratio?"),
    ("launch.slurm.additional_parameters.account=me", "override", None),  # free-form below: allowed
])
def test_unknown_names_are_errors_with_a_suggestion(tmp_path, text, where, message):
    params = tmp_path / "params.yaml"
    params.write_text(text if where == "file" else "seed: 0\n")
    overrides = [text] if where == "override" else []
    if message is None:
        assert load_params(params, overrides=overrides)["launch"]["slurm"]["additional_parameters"] == {"account": "me"}
        return
    with pytest.raises(ConfigError) as err:
        load_params(params, overrides=overrides)
    assert str(err.value) == message.format(file=params)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")
