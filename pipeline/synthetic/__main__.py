"""``python -m pipeline.synthetic``: generate the built-in synthetic benchmark.

Reads the ``synthetic`` section of params.yaml; flags override it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, ConfigError, deep_merge, parse_override, section
from pipeline.synthetic.config import SyntheticConfig, load_config
from pipeline.synthetic.encode import EncodeError
from pipeline.synthetic.generate import generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline.synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=None,
                   help=f"params file (default {DEFAULT_PARAMS.name} at the repository root)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default synthetic.out_dir)")
    p.add_argument("--preset", choices=("default", "large"), default=None)
    p.add_argument("--num-clips", type=int, default=None, help="overrides the preset's clip count")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any synthetic field, e.g. --set held_out_fraction=0.15")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    overrides = [f"synthetic.{kv}" for kv in args.set]
    for flag, key in (("preset", "preset"), ("num_clips", "num_clips"), ("seed", "seed"),
                      ("workers", "workers"), ("out", "out_dir")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"synthetic.{key}={value}")
    if args.params is None and not DEFAULT_PARAMS.exists():
        # No params.yaml (a fresh checkout before integration): dataclass defaults + flags.
        data: dict = {}
        for text in overrides:
            data = deep_merge(data, parse_override(text))
        return section(data, SyntheticConfig, "synthetic")
    return load_config(args.params, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
        summary = generate(cfg, progress=not args.no_progress)
    except (ConfigError, EncodeError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
