"""Pre-train one arm of the order study: ``train.pretrain`` with caption-order negatives.

    python -m studies.order.train --caption-order 1.0 -- --params params.yaml --recipe smaug \
        pretrain.out_dir=models/studies/order/text-neg pretrain.results_dir=results/studies/order/text-neg

Everything after ``--`` goes to ``python -m train.pretrain`` as it is (recipes, overrides);
``--caption-order W`` is the weight of the caption-order loss (0: the plain recipe).
"""

from __future__ import annotations

import argparse
import sys

from studies.runner import pretrain_with, split_args

from .model import CaptionOrderSMAUG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="studies.order.train")
    parser.add_argument("--caption-order", type=float, required=True,
                        help="weight of the caption-order loss (>= 0)")
    args, pretrain_argv = split_args(sys.argv[1:] if argv is None else argv, parser)
    if args.caption_order < 0:
        parser.error(f"--caption-order must be >= 0, got {args.caption_order}")
    CaptionOrderSMAUG.weight = args.caption_order
    return pretrain_with(CaptionOrderSMAUG, pretrain_argv)


if __name__ == "__main__":
    sys.exit(main())
