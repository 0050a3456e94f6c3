"""What every study's ``train`` entry point shares: its own flags before ``--``, then
``python -m train.pretrain``'s arguments as they are, with the study's SMAUG subclass built
in place of train.model.SMAUG (so the default pipeline's code, and its DVC locks, stay as they are).
"""

from __future__ import annotations

import argparse

import train.model
from train.model.smaug import SMAUG


def split_args(argv: list[str], parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[str]]:
    """(the study's parsed flags, the arguments after ``--`` for train.pretrain)."""
    if "--" not in argv:
        raise SystemExit(f"usage: python -m {parser.prog} <study flags> -- <train.pretrain arguments>")
    split = argv.index("--")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def use_model(model_cls: type) -> None:
    """Build (and load checkpoints as) ``model_cls``, a SMAUG subclass, wherever the project
    builds train.model.SMAUG: train.pretrain, eval.evaluate and train.checkpoint look the name
    up when they run, so swapping it here reaches all of them."""
    if not issubclass(model_cls, SMAUG):   # train.model.SMAUG itself may be swapped already
        raise TypeError(f"{model_cls.__name__} is not a SMAUG subclass")
    train.model.SMAUG = model_cls


def pretrain_with(model_cls: type, argv: list[str], program: str = "pretrain") -> int:
    """Run train.pretrain (or, ``program="evaluate"``, eval.evaluate) with ``model_cls`` as the
    model, a SMAUG subclass. Subclasses without parameters of their own write checkpoints that
    plain evaluation loads; one that adds parameters must be evaluated this way."""
    if program not in ("pretrain", "evaluate"):
        raise ValueError(f"unknown program {program!r} (pretrain | evaluate)")
    use_model(model_cls)
    if program == "pretrain":
        from train.pretrain import main as run
    else:
        from eval.evaluate import main as run
    return run(argv)
