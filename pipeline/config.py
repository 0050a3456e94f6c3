"""Typed configuration: ``params.yaml`` sections become frozen dataclasses.

Every part of the project owns a dataclass for its own section of ``params.yaml``
(``SyntheticConfig`` for ``synthetic:``, ``PreprocessConfig`` for ``preprocess:`` ...).
This module is the one place that turns plain YAML into those dataclasses, so every
bad value is rejected the same way: a :class:`ConfigError` whose message starts with
the dotted name of the offending key, e.g. ``model.video.depth: expected int, got 'six'``.

Recipes (``pipeline/recipes/<name>.yaml``) and ``key.path=value`` overrides are deep-merged
on top of ``params.yaml`` before the dataclasses are built, so a recipe is a config file,
never a fork of the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def check(condition: bool, name: str, message: str) -> None:
    """Raise ``ConfigError("name: message")`` unless ``condition`` holds.

    Use it in ``__post_init__`` of a config dataclass for range checks, e.g.
    ``check(0 <= self.mask_ratio < 1, "model.video.mask_ratio", "must be in [0, 1)")``.
    Inside ``__post_init__`` the dataclass does not know its dotted prefix, so callers
    may pass the leaf name; :func:`build` prefixes it with the section path.
    """
    if not condition:
        raise ConfigError(f"{name}: {message}")


SEED_LIMIT = 2 ** 32  # numpy's generators take seeds in [0, 2**32) as one word


def check_seed(value: int | None, name: str = "seed") -> None:
    """A seed numpy and torch both take (a negative one fails only deep inside a data loader)."""
    check(value is None or 0 <= value < SEED_LIMIT, name, f"must be in [0, 2**32), got {value}")


def top_level_seed(params: dict[str, Any]) -> int:
    """The params' top-level ``seed`` (0 when absent), checked like any other setting."""
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected int, got {seed!r}")
    check_seed(seed)
    return seed


def top_level_deterministic(params: dict[str, Any]) -> bool:
    """The params' top-level ``deterministic`` (true when absent): whether training runs
    torch's repeatable kernels (train/repeatable.py)."""
    value = params.get("deterministic", True)
    if not isinstance(value, bool):
        raise ConfigError(f"deterministic: expected true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------- loading


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a params file")
    try:
        with path.open(encoding="utf-8") as f:
            # libyaml's parser when PyYAML was built with it: the same safe loader, ~10x faster on
            # params.yaml (0.3 s of every command's start-up in pure Python)
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: {err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overlay`` merged in; mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"pretrain.steps=10"`` -> ``{"pretrain": {"steps": 10}}`` (value parsed as YAML).

    Lists are YAML flow sequences: ``eval.tasks=[retrieval]``, ``eval.recipes=[smaug,dense]``.
    """
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"{text}: override must look like key.path=value")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise ConfigError(f"{text}: value is not valid YAML ({problem})") from None
    node: dict[str, Any] = {}
    root = node
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return root


# --------------------------------------------------------------------------- names


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The repository's params.yaml: the one list of every section and key that exists.

    Every default lives there (a test checks that each dataclass agrees with it), so a name that
    is not in it is a typo, wherever it was written.
    """
    return load_yaml(DEFAULT_PARAMS)


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f" (known: {', '.join(map(str, known))})"


def check_names(data: dict[str, Any], origin: str, *, allowed_top: tuple[str, ...] = ()) -> None:
    """Reject any section or key of ``data`` that params.yaml does not have.

    ``origin`` says where ``data`` came from (a file, an override) for the message, e.g.
    ``pretrian: unknown section (in override pretrian.steps=3); did you mean pretrain?``.
    A key whose params.yaml value is an empty mapping (``additional_parameters: {}``) or null is
    free-form below it: its contents are checked by its dataclass, not here.
    """
    _check_names(data, schema(), "", origin, allowed_top)


def _check_names(data: Any, base: Any, prefix: str, origin: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(data, dict) or not isinstance(base, dict) or not base:
        return
    for key, value in data.items():
        if key in base:
            _check_names(value, base[key], f"{prefix}{key}.", origin, ())
            continue
        if key in allowed:
            continue
        what = "unknown section" if not prefix else "unknown key"
        where = f" (in {origin})" if origin else ""
        raise ConfigError(f"{prefix}{key}: {what}{where}{_did_you_mean(key, list(base))}")


def recipe_path(name: str) -> Path:
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise ConfigError(f"recipe: unknown recipe {name!r}; known recipes: {', '.join(known)}")
    return path


def load_params(
    path: str | Path | None = None,
    *,
    recipe: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """params.yaml, then the recipe overlay (if any), then ``key=value`` overrides."""
    path = Path(path or DEFAULT_PARAMS)
    data = load_yaml(path)
    check_names(data, str(path))
    if recipe:
        data = deep_merge(data, load_recipe(recipe))
    return apply_overrides(data, overrides or [])


def load_recipe(name: str) -> dict[str, Any]:
    """A recipe overlay, checked for unknown names, without its ``description``."""
    path = recipe_path(name)
    overlay = load_yaml(path)
    check_names(overlay, str(path), allowed_top=("description",))
    overlay.pop("description", None)
    return overlay


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.path=value`` overrides merged last, each checked for unknown names."""
    for text in overrides:
        overlay = parse_override(text)
        check_names(overlay, f"override {text}")
        data = deep_merge(data, overlay)
    return data


def section(data: dict[str, Any], cls: type[T], name: str) -> T:
    """Build ``cls`` from ``data[name]`` (a missing section means all defaults)."""
    raw = data.get(name, {})
    if raw is None:
        raw = {}
    return build(cls, raw, name)


# --------------------------------------------------------------------------- building


def build(cls: type[T], data: Any, where: str) -> T:
    """Construct dataclass ``cls`` from a mapping, checking names and types recursively."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key{_did_you_mean(unknown[0], sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        msg = str(err)
        # __post_init__ checks name the leaf; give them the full dotted path.
        if not msg.startswith(where + "."):
            msg = f"{where}.{msg}"
        raise ConfigError(msg) from None
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args or (Any, Any)
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 3e-4 (no dot) as a string; people write it that way on the CLI
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise ConfigError(f"{where}: expected a number, got {value!r}")
            return number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .inf / .nan arrive as floats
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def to_dict(cfg: Any) -> Any:
    """Dataclass -> plain YAML/JSON-able structures (paths as strings)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg
