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
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.config import ConfigError

EXIT_CONFIG = 2  # a configuration (or checkpoint) problem the user must fix; argparse uses 2 too


# The folders a run writes (checkpoints, metrics, curves, evaluation details, tables). ``--run-dir
# DIR`` puts each under DIR with the same layout, so a run on one's own data sits apart from the
# built-in benchmark's committed results and can never overwrite them.
RUN_DIR_KEYS = (
    "pretrain.out_dir", "pretrain.results_dir",
    "finetune.init_dir", "finetune.out_dir",
    "eval.pretrain_dir", "eval.finetune_dir", "eval.metrics_dir", "eval.details_dir", "eval.plots_dir",
    "tables.eval_dir", "tables.metrics_dir", "tables.out_dir", "tables.cost_plot",
)


def add_config_arguments(p: argparse.ArgumentParser, *, overrides: bool = True, run_dir: bool = False) -> None:
    """``--params``, ``--print-config``, (unless ``overrides=False``) positional overrides, and
    (with ``run_dir=True``) ``--run-dir DIR``, which :func:`parse` turns into overrides."""
    p.add_argument("--params", default=None, metavar="YAML",
                   help="params file (default: the repository's params.yaml)")
    if run_dir:
        p.add_argument("--run-dir", default=None, metavar="DIR",
                       help="write every output (models/..., results/...) under DIR, in the repository's "
                            "layout, e.g. --run-dir runs/mine: a run on your own data never touches results/")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration (params + recipe + overrides) as YAML and exit")
    if overrides:
        p.add_argument("overrides", nargs="*", metavar="key.path=value",
                       help="settings that replace params.yaml's, e.g. pretrain.steps=20 eval.tasks=[retrieval]")


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts (``-k``, ``--batch-size``): checked before any work starts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Options and ``key=value`` overrides in any order (``--recipe dense pretrain.steps=3 --fresh``)."""
    args = p.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    for text in getattr(args, "overrides", None) or []:
        if "=" not in text:
            p.error(f"argument {text!r} is neither an option nor a key.path=value override")
    if getattr(args, "run_dir", None) is not None:  # "" too: an unset "$RUN" must not mean results/
        # first, so that an explicit override of one of the folders still wins
        args.overrides = run_dir_overrides(args.run_dir, args.params) + list(args.overrides)
    return args


def run_dir_overrides(run_dir: str, params_path: str | None = None) -> list[str]:
    """``key=DIR/<value>`` for every output folder of :data:`RUN_DIR_KEYS` (its value in the params
    file, else params.yaml's); absolute folders stay where they are."""
    from pipeline.config import DEFAULT_PARAMS, load_yaml, schema

    if not str(run_dir).strip():
        raise ConfigError("--run-dir: must be a folder")
    given = load_yaml(params_path or DEFAULT_PARAMS)
    out = []
    for dotted in RUN_DIR_KEYS:
        section, key = dotted.split(".")
        value = (given.get(section) or {}).get(key, schema()[section][key])
        if value is None or Path(str(value)).is_absolute():
            continue
        out.append(f"{dotted}={Path(run_dir) / str(value)}")
    return out


def print_config(params: dict[str, Any]) -> int:
    """The resolved configuration as YAML on stdout (the ``--print-config`` answer)."""
    sys.stdout.write(yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=100))
    return 0


def fail(message: Any, code: int = EXIT_CONFIG) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def warn_unread(overrides: list[str], program: str, *, machine_loader: tuple[str, ...]) -> None:
    """One ``warning:`` line per override this program does not read: fine-tuning and evaluation
    take the model and the loader's clip settings from the checkpoint, so ``model.*`` and (but for
    ``machine_loader``, this machine's) ``loader.*`` there would otherwise be dropped silently."""
    for text in overrides:
        key = text.partition("=")[0].strip()
        section, _, rest = key.partition(".")
        if section == "model" or (section == "loader" and rest not in machine_loader):
            print(f"warning: {key} is not read by {program}: it takes the model and the loader's clip "
                  "settings from the checkpoint", file=sys.stderr)


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
