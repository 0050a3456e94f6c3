"""What every entry point shares: ``--params``, ``--print-config``, ``key.path=value`` overrides,
and one way to fail on a configuration error.

Every program of the project (``pipeline.synthetic``, ``preprocess``, ``train.pretrain``,
``train.finetune``, ``train.bench``, ``eval.evaluate``, ``eval.tables``, ...) takes settings the same
way::

    python -m train.pretrain --recipe dense pretrain.steps=20 eval.tasks=[retrieval]

and ``--print-config`` prints what it would run with (params.yaml, then the recipe, then the
overrides) as YAML and exits 0. A configuration error prints one line ``error: ...`` naming the
key and exits 2: never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable

import yaml

from pipeline.config import ConfigError

EXIT_CONFIG = 2  # a configuration (or checkpoint) problem the user must fix; argparse uses 2 too


def add_config_arguments(p: argparse.ArgumentParser, *, overrides: bool = True) -> None:
    """``--params``, ``--print-config`` and (unless ``overrides=False``) positional overrides."""
    p.add_argument("--params", default=None, metavar="YAML",
                   help="params file (default: the repository's params.yaml)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration (params + recipe + overrides) as YAML and exit")
    if overrides:
        p.add_argument("overrides", nargs="*", metavar="key.path=value",
                       help="settings that replace params.yaml's, e.g. pretrain.steps=20 eval.tasks=[retrieval]")


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Options and ``key=value`` overrides in any order (``--recipe dense pretrain.steps=3 --fresh``)."""
    args = p.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    for text in getattr(args, "overrides", None) or []:
        if "=" not in text:
            p.error(f"argument {text!r} is neither an option nor a key.path=value override")
    return args


def print_config(params: dict[str, Any]) -> int:
    """The resolved configuration as YAML on stdout (the ``--print-config`` answer)."""
    sys.stdout.write(yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=100))
    return 0


def fail(message: Any, code: int = EXIT_CONFIG) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def print_written(write: Callable[[], Any]) -> int:
    """Run ``write()`` and print each path it returns (exit 0); a bad input it reports as a
    ``ValueError`` becomes one ``error:`` line and exit 2 (a ConfigError goes up to
    :func:`config_errors_exit`)."""
    try:
        for path in write():
            print(path)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        return fail(err)
    return 0


def config_errors_exit(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a ``main``: a :class:`ConfigError` becomes ``error: ...`` on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except ConfigError as err:
            return fail(err)

    return wrapper
