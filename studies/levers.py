"""Pre-train with several studies' changes at once: ``python -m studies.levers [flags] -- <train.pretrain args>``.

    python -m studies.levers --bank 4096 --unmasked-from 360 -- --params params.yaml --recipe smaug \
        pretrain.out_dir=models/studies/levers/bank-unmasked pretrain.results_dir=results/studies/levers/bank-unmasked

Each flag adds one study's SMAUG subclass (they compose: each overrides a different part of the
step): ``--bank N`` studies/caption_bank, ``--unmasked-from S`` studies/unmasked,
``--caption-order W [--caption-order-same-form | --caption-order-same-words]`` studies/order, ``--frame-order``
studies/frame_order, ``--text-adapter N`` studies/text_adapter, ``--change-tokens``
studies/change_tokens, ``--order-pooling`` studies/order_pooling, ``--verb-negatives W``
studies/verb_negatives, ``--conv-stem`` studies/conv_stem, ``--segments W`` studies/segments. ``--view whole``
(studies/view) changes the frames' boxes instead: the whole frame at test, boxes relative to the
frame's aspect in training. ``--neighbours G``
(studies/neighbours) changes the loader instead: batches of neighbour groups of G clips by caption
similarity (run it with ``loader.num_workers=1``). With no flag it is plain ``train.pretrain``.
``--program evaluate`` runs ``eval.evaluate`` with the same model instead (needed when a study
adds parameters, as the frame-order head, the text adapter and change tokens do).
"""

from __future__ import annotations

import argparse
import sys

from studies.runner import pretrain_with, split_args
from train.model.smaug import SMAUG


def study_model(bank: int = 0, unmasked_from: int | None = None, caption_order: float = 0.0,
                frame_order: bool = False, text_adapter: int = 0, change_tokens: bool = False,
                text_adapter_lr_scale: float = 1.0, caption_order_same_form: bool = False,
                caption_order_same_words: bool = False, order_pooling: bool = False,
                verb_negatives: float = 0.0, conv_stem: bool = False, conv_stem_norm: str = "none",
                conv_stem_kind: str = "patch", segments: float = 0.0) -> type:
    """The SMAUG subclass with the chosen studies' changes (SMAUG itself when none)."""
    if change_tokens and conv_stem:
        # each replaces the whole video tower with its own patch embedding
        raise ValueError("change_tokens and conv_stem each replace the video tower's patch embedding: choose one")
    if caption_order > 0 and verb_negatives > 0:
        # both are studies.order.model.CaptionNegativeSMAUG: one forward, one kind of negative
        raise ValueError("caption_order and verb_negatives share one loss slot: choose one")
    bases: list[type] = []
    if bank > 0:
        from studies.caption_bank.model import CaptionBankSMAUG
        bases.append(type("Bank", (CaptionBankSMAUG,), {"size": bank}))
    if unmasked_from is not None:
        from studies.unmasked.model import UnmaskedTuningSMAUG
        bases.append(type("Unmasked", (UnmaskedTuningSMAUG,), {"unmasked_from": unmasked_from}))
    if caption_order > 0:
        from studies.order.model import CaptionOrderSMAUG
        bases.append(type("CaptionOrder", (CaptionOrderSMAUG,),
                          {"weight": caption_order, "same_form": caption_order_same_form,
                           "same_words": caption_order_same_words}))
    if frame_order:
        from studies.frame_order.model import FrameOrderSMAUG
        bases.append(type("FrameOrder", (FrameOrderSMAUG,), {"enabled": True}))
    if text_adapter > 0:
        from studies.text_adapter.model import TextAdapterSMAUG
        bases.append(type("TextAdapter", (TextAdapterSMAUG,),
                          {"layers": text_adapter, "lr_scale": text_adapter_lr_scale}))
    if change_tokens:
        from studies.change_tokens.model import ChangeTokenSMAUG
        bases.append(type("ChangeTokens", (ChangeTokenSMAUG,), {"enabled": True}))
    if order_pooling:
        from studies.order_pooling.model import OrderPoolingSMAUG
        bases.append(type("OrderPooling", (OrderPoolingSMAUG,), {"enabled": True}))
    if conv_stem:
        from studies.conv_stem.model import ConvStemSMAUG
        bases.append(type("ConvStem", (ConvStemSMAUG,), {"enabled": True, "norm": conv_stem_norm,
                                                      "kind": conv_stem_kind}))
    if segments > 0:
        if order_pooling:
            # each builds the VTC video feature from the tokens' frames in its own way
            raise ValueError("segments and order_pooling each extend the VTC video feature: choose one")
        from studies.segments.model import ClauseSegmentSMAUG
        bases.append(type("Segments", (ClauseSegmentSMAUG,), {"weight": segments}))
    if verb_negatives > 0:
        from studies.verb_negatives.model import VerbNegativeSMAUG
        bases.append(type("VerbNegatives", (VerbNegativeSMAUG,), {"weight": verb_negatives}))
    if not bases:
        return SMAUG
    return bases[0] if len(bases) == 1 else type("StudySMAUG", tuple(bases), {})


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that change which parameters a checkpoint holds. Defined once here, for this
    program (which trains with them) and for the programs that read its checkpoints back
    (studies.order.probe, studies.order.analyse), which must build the same model to load them."""
    parser.add_argument("--text-adapter", type=int, default=0,
                        help="trainable text layers between the frozen MiniLM and the VTC text feature "
                             "(studies/text_adapter; 0: none)")
    parser.add_argument("--change-tokens", action="store_true",
                        help="each patch also carries its change since the frame before (studies/change_tokens)")
    parser.add_argument("--order-pooling", action="store_true",
                        help="the video feature adds the tokens' late-minus-early moment (studies/order_pooling)")
    parser.add_argument("--conv-stem", action="store_true",
                        help="embed each video patch with a small conv stem, not one linear map (studies/conv_stem)")
    parser.add_argument("--conv-stem-norm", choices=("none", "group"), default="none",
                        help="normalisation inside the conv stem (group: GroupNorm)")
    parser.add_argument("--conv-stem-kind", choices=("patch", "clip3d", "clip3d-res"), default="patch",
                        help="patch: convolutions on each visible patch; clip3d: a 3-D CNN on the whole clip, "
                             "masking after it; clip3d-res: the default's pixels plus that CNN's feature, "
                             "its projection zero at step 0")
    parser.add_argument("--segments", type=float, default=0.0,
                        help="share of the VTC score from the clip's halves against its caption's clauses "
                             "(studies/segments; 0: off)")


def check_model_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.text_adapter < 0:
        parser.error(f"--text-adapter must be >= 0, got {args.text_adapter}")
    if (args.conv_stem_norm != "none" or args.conv_stem_kind != "patch") and not args.conv_stem:
        parser.error("--conv-stem-norm and --conv-stem-kind need --conv-stem")
    if args.change_tokens and args.conv_stem:
        parser.error("--change-tokens and --conv-stem each replace the patch embedding: choose one")
    if not 0.0 <= args.segments < 1.0:
        parser.error(f"--segments must be in [0, 1), got {args.segments}")
    if args.segments and args.order_pooling:
        parser.error("--segments and --order-pooling each extend the VTC video feature: choose one")


def use_model_of_flags(args: argparse.Namespace) -> None:
    """Build and load checkpoints as the model these flags (add_model_flags) trained."""
    if args.text_adapter or args.change_tokens or args.order_pooling or args.conv_stem or args.segments:
        from studies.runner import use_model

        use_model(study_model(text_adapter=args.text_adapter, change_tokens=args.change_tokens,
                              order_pooling=args.order_pooling, conv_stem=args.conv_stem,
                              conv_stem_norm=args.conv_stem_norm, conv_stem_kind=args.conv_stem_kind,
                              segments=args.segments))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="studies.levers")
    parser.add_argument("--bank", type=int, default=0, help="caption bank size (0: in-batch VTC)")
    parser.add_argument("--unmasked-from", type=int, default=None,
                        help="first step (0-based) without video masking and MVM")
    parser.add_argument("--caption-order", type=float, default=0.0, help="weight of the caption-order loss")
    parser.add_argument("--caption-order-same-form", action="store_true",
                        help="caption-order negatives only where the swap keeps the caption's form")
    parser.add_argument("--caption-order-same-words", action="store_true",
                        help="caption-order negatives only where the swap reorders the caption's own words")
    parser.add_argument("--frame-order", action="store_true", help="add the frame-order head (studies/frame_order)")
    add_model_flags(parser)
    parser.add_argument("--text-adapter-lr-scale", type=float, default=1.0,
                        help="the adapter learns at this x pretrain.lr")
    parser.add_argument("--verb-negatives", type=float, default=0.0,
                        help="weight of the verb-negative loss (studies/verb_negatives; 0: off)")
    parser.add_argument("--neighbours", type=int, default=0,
                        help="batches of neighbour groups of this many clips by caption similarity "
                             "(studies/neighbours; 0: the loader's shuffle)")
    parser.add_argument("--neighbour-share", type=float, default=1.0,
                        help="about this share of each batch in neighbour groups, the rest single clips")
    parser.add_argument("--view", choices=("centre", "whole"), default="centre",
                        help="whole: evaluate on the whole frame and draw training boxes relative to its "
                             "aspect (studies/view); centre: the loader's centre square and 3:4-4:3 boxes")
    parser.add_argument("--program", choices=("pretrain", "evaluate"), default="pretrain",
                        help="evaluate: run eval.evaluate with the same model (a study that adds "
                             "parameters needs it to load its checkpoints)")
    args, pretrain_argv = split_args(sys.argv[1:] if argv is None else argv, parser)
    check_model_flags(parser, args)
    for name in ("bank", "unmasked_from", "caption_order", "neighbours", "verb_negatives"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for flag in ("same_form", "same_words"):
        if getattr(args, f"caption_order_{flag}") and not args.caption_order:
            parser.error(f"--caption-order-{flag.replace('_', '-')} needs --caption-order W > 0")
    if args.caption_order and args.verb_negatives:
        parser.error("--caption-order and --verb-negatives share one loss slot (studies/order/model.py): choose one")
    if args.caption_order_same_form and args.caption_order_same_words:
        parser.error("--caption-order-same-form and --caption-order-same-words: choose one")
    if not args.text_adapter_lr_scale > 0.0:
        parser.error(f"--text-adapter-lr-scale must be > 0, got {args.text_adapter_lr_scale}")
    if not 0.0 < args.neighbour_share <= 1.0:
        parser.error(f"--neighbour-share must be in (0, 1], got {args.neighbour_share}")
    if args.neighbours == 1:
        parser.error("--neighbours must be 0 (off) or a group of at least 2 clips, got 1")
    model = study_model(args.bank, args.unmasked_from, args.caption_order, args.frame_order,
                        args.text_adapter, args.change_tokens, args.text_adapter_lr_scale,
                        args.caption_order_same_form, args.caption_order_same_words,
                        args.order_pooling, args.verb_negatives, args.conv_stem, args.conv_stem_norm,
                        args.conv_stem_kind, args.segments)
    if args.neighbours and args.program == "pretrain":
        from studies.neighbours.batches import install

        install(args.neighbours, args.neighbour_share)
    if args.view != "centre":
        from studies.view.frames import install as install_view

        install_view(args.view)
    return pretrain_with(model, pretrain_argv, program=args.program)


if __name__ == "__main__":
    sys.exit(main())
