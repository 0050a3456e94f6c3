"""``python -m pipeline.synthetic``: generate the built-in synthetic benchmark.

Reads the ``synthetic`` section of params.yaml; flags override it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline import cli
from pipeline.config import load_params, section
from pipeline.sections import check_every_section
from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.encode import EncodeError
from pipeline.synthetic.generate import generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline.synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="output folder (default synthetic.out_dir)")
    p.add_argument("--preset", choices=("default", "large"), default=None)
    p.add_argument("--num-clips", type=int, default=None, help="overrides the preset's clip count")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true")
    cli.add_config_arguments(p)  # e.g. synthetic.held_out_fraction=0.15 'synthetic.formats=[mp4, gif]'
    return cli.parse(p, argv)


def resolved_params(args: argparse.Namespace) -> dict:
    """params.yaml + overrides, then the flags (each is a ``synthetic.`` key)."""
    flags = []
    for flag, key in (("preset", "preset"), ("num_clips", "num_clips"), ("seed", "seed"),
                      ("workers", "workers"), ("out", "out_dir")):
        value = getattr(args, flag)
        if value is not None:
            flags.append(f"synthetic.{key}={value}")
    return load_params(args.params, overrides=[*args.overrides, *flags])


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    return section(resolved_params(args), SyntheticConfig, "synthetic")


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args)
    if os.environ.get("DVC_STAGE"):  # DVC runs it (it sets DVC_STAGE): the pipeline's first stage
        check_every_section(resolved_params(args))  # checks what the later stages will read
    if args.print_config:
        return cli.print_config(resolved_params(args))
    try:
        summary = generate(cfg, progress=not args.no_progress)
    except (EncodeError, FileExistsError) as err:
        return cli.fail(err)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
