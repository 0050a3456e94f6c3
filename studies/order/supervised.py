"""Can this tower learn events at all from these clips? Supervise it directly and see.

    python -m studies.order.supervised [--tower vit] [--steps 400] [--mask-ratio 0.0] [--fit-clips N]
        [--out FILE] [key=value ...]

The probe (probe.py) finds no pre-trained tower that names a clip's events. That could be the
objective (in-batch VTC never needs events here) or the input (4 frames of 96 px, a small object
changing by a few patches). This separates the two: the default video tower (``model.video``,
from scratch, sparsification off) is trained with the events as labels, read from each training
clip's canonical caption "X, then Y" (probe.py's labels), for as many steps and clips as a
pre-training run sees: a first-event head (softmax over ``EVENT_VERBS``) and an events head (one
logistic output per verb). Scored on the test split with probe.py's measures:
order accuracy (first event's verb above the second's; chance 50) and events accuracy (the two
verbs are the events head's two highest; the two-commonest prior is about 17%).

If direct supervision reaches high test scores, the input carries events and the pre-training
objective is what misses them; if it does not, the input (frames, size) or the tower is the
limit. The loader is the pre-training loader (augmented, ``loader:`` settings, any override).

``--tower`` swaps the tower: the conv stem and change tokens of those studies, or a small 3-D CNN
with a convolution's priors. ``--fit-clips N`` is the memorisation check that the labels, clips and
heads line up: train on N fixed training clips (decoded as evaluation decodes them) and score on
those N. A tower that cannot fit them would point at a bug, not at the task.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .probe import EVENT_VERBS, clip_labels


def _labelled(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of the batch with two-event labels, their labels [K, 2])."""
    labels = [clip_labels(m.get("captions") or []) for m in batch["meta"]]
    rows = [i for i, l in enumerate(labels) if l is not None]
    return torch.tensor(rows, dtype=torch.long), torch.tensor([labels[i] for i in rows]).view(-1, 2)


class Conv3dTower(nn.Module):
    """A small 3-D CNN, the reference with a convolution's priors: [B, T, 3, H, W] -> [B, T * C].

    studies/conv_stem's clip tokenizer with GroupNorm: four stride-2 spatial stages (temporal
    kernel 3, temporal stride 1), then a spatial mean per frame; the frames' features are
    concatenated in time order, so the heads can read order.
    """

    def __init__(self, frames: int, channels: int = 32) -> None:
        super().__init__()
        from studies.conv_stem.model import ClipConvTokenizer

        self.cnn = ClipConvTokenizer(patch=16, base_channels=channels, norm="group")   # 16 px: 4 stages
        self.width = self.cnn.out_channels * frames

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.cnn.feature_map(video)                # [B, C, T, h, w]
        return x.mean(dim=(3, 4)).flatten(1)           # [B, C*T]


TOWERS = ("vit", "conv-stem", "change-tokens", "conv3d")


def _vit_tower(tower: str) -> type:
    if tower == "conv-stem":
        from studies.conv_stem.model import ConvStemVideoEncoder
        return ConvStemVideoEncoder
    if tower == "change-tokens":
        from studies.change_tokens.model import ChangeTokenVideoEncoder
        return ChangeTokenVideoEncoder
    from train.model.video_encoder import VideoEncoder
    return VideoEncoder


class EventTower(nn.Module):
    """The two event heads on a video tower: ``vit`` the default tower (``model.video``), ``conv-stem``
    the same with studies/conv_stem's patch embedding, ``change-tokens`` with studies/change_tokens',
    ``conv3d`` the 3-D CNN above."""

    def __init__(self, video_cfg, tower: str = "vit") -> None:
        super().__init__()
        if tower not in TOWERS:
            raise ValueError(f"unknown tower {tower!r}: one of {', '.join(TOWERS)}")
        self.tower = tower
        if tower == "conv3d":
            self.video = Conv3dTower(video_cfg.num_frames)
            width = self.video.width
        else:
            self.video = _vit_tower(tower)(video_cfg, None)
            width = video_cfg.width
        self.first = nn.Linear(width, len(EVENT_VERBS))
        self.events = nn.Linear(width, len(EVENT_VERBS))

    def forward(self, video: torch.Tensor, mask_ratio: float = 0.0):
        if self.tower == "conv3d":
            if mask_ratio:
                raise ValueError("the conv3d tower has no masking: use --mask-ratio 0")
            feature = self.video(video)
        else:
            feature = self.video(video, mask_ratio=mask_ratio).tokens[:, 0]
        return self.first(feature), self.events(feature)


def scores(first_logits: torch.Tensor, event_logits: torch.Tensor, labels: torch.Tensor) -> dict:
    first, second = labels[:, 0], labels[:, 1]
    differ = first != second
    rows = torch.arange(len(first))
    top2 = event_logits.topk(2, dim=1).indices
    both = (top2 == first[:, None]).any(1) & (top2 == second[:, None]).any(1)
    return {"order_acc": float(100 * (first_logits[rows, first] > first_logits[rows, second])[differ].float().mean()),
            "events_acc": float(100 * both[differ].float().mean()),
            "first_verb_acc": float(100 * (first_logits.argmax(1) == first).float().mean()),
            "num_test": int(differ.sum())}


def prior_order_acc(train_labels: torch.Tensor, test_labels: torch.Tensor) -> float | None:
    """Order accuracy of a first-event head that sees no video: it ranks verbs by how often each
    came first in training (what a head on an uninformative feature learns). Shows what the
    benchmark's verb-order statistics alone give (``appears`` and ``disappears`` are not placed
    symmetrically), against the nominal 50."""
    counts = torch.bincount(train_labels[:, 0], minlength=len(EVENT_VERBS)).float()
    first, second = test_labels[:, 0], test_labels[:, 1]
    differ = first != second
    if not differ.any():
        return None
    a, b = counts[first[differ]], counts[second[differ]]
    return float(100 * ((a > b).float() + 0.5 * (a == b).float()).mean())   # a tie is a coin


def _batches(train_loader, fit: tuple[torch.Tensor, torch.Tensor] | None, seed: int):
    """(video, labels) of labelled clips, without end: from the augmented training loader, or
    (``--fit-clips``) random batches of 16 from a fixed set of clips."""
    if fit is not None:
        video, labels = fit
        g = torch.Generator().manual_seed(seed)
        while True:
            take = torch.randperm(len(video), generator=g)[:16]
            yield video[take], labels[take]
    while True:
        for batch in train_loader:
            rows, labels = _labelled(batch)
            if len(rows):
                yield batch["video"][rows], labels


def _labelled_clips(loader, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    videos, labels = [], []
    for batch in loader:
        rows, lab = _labelled(batch)
        videos.append(batch["video"][rows])
        labels.append(lab)
        if limit is not None and sum(len(l) for l in labels) >= limit:
            break
    video, label = torch.cat(videos), torch.cat(labels)
    return (video, label) if limit is None else (video[:limit], label[:limit])


def _evaluate(model: EventTower, video: torch.Tensor, labels: torch.Tensor) -> dict:
    with torch.no_grad():
        outs = [model(video[i:i + 32]) for i in range(0, len(video), 32)]
    return scores(torch.cat([f for f, _ in outs]), torch.cat([e for _, e in outs]), labels)


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import load_params, section
    from train.data import build_loader
    from train.data.config import LoaderConfig
    from train.model.config import ModelConfig

    parser = argparse.ArgumentParser(prog="studies.order.supervised", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mask-ratio", type=float, default=0.0, help="video masking while training (0: none)")
    parser.add_argument("--train-shards", default="data/shards/ret_train")
    parser.add_argument("--test-shards", default="data/shards/ret_test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tower", choices=TOWERS, default="vit",
                        help="vit: the default tower; conv-stem / change-tokens: with that study's patch "
                             "embedding; conv3d: a small 3-D CNN for reference")
    parser.add_argument("--fit-clips", type=int, default=None, metavar="N",
                        help="memorisation check: train on the first N labelled training clips as evaluation "
                             "decodes them (no augmentation) and score on those N")
    parser.add_argument("--prior-only", action="store_true",
                        help="train nothing: only the order accuracy a head without video gets from the "
                             "training labels' verb order (prior_order_acc)")
    parser.add_argument("--out", default="results/studies/order/supervised.json")
    parser.add_argument("overrides", nargs="*", help="params overrides (loader.*, model.video.*)")
    args = parser.parse_args(argv)
    if args.tower == "conv3d" and args.mask_ratio:
        parser.error("--tower conv3d has no masking: --mask-ratio must be 0")
    if args.steps < 1 or not 0.0 <= args.mask_ratio < 1.0:
        parser.error(f"--steps must be >= 1 and --mask-ratio in [0, 1): got {args.steps}, {args.mask_ratio}")
    if args.fit_clips is not None and args.fit_clips < 2:
        parser.error(f"--fit-clips must be >= 2, got {args.fit_clips}")
    params = load_params(args.params, overrides=args.overrides)
    loader_cfg = section(params, LoaderConfig, "loader")
    model_cfg = section(params, ModelConfig, "model")

    def plain(shards: str):
        return build_loader(loader_cfg, shards, train=False, text="caption", seed=0)

    if args.prior_only:
        train_labels = _labelled_clips(plain(args.train_shards))[1]
        test_labels = _labelled_clips(plain(args.test_shards))[1]
        result = {"train_shards": args.train_shards, "test_shards": args.test_shards,
                  "num_train": len(train_labels), "test": {"prior_order_acc": prior_order_acc(train_labels, test_labels)}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"a first-event head without video: test order accuracy {result['test']['prior_order_acc']:.1f} "
              f"(chance 50; {len(train_labels)} training labels)")
        return 0
    torch.manual_seed(args.seed)
    model = EventTower(model_cfg.video, args.tower)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)

    fit = _labelled_clips(plain(args.train_shards), args.fit_clips) if args.fit_clips else None
    if fit is not None and len(fit[1]) < args.fit_clips:
        parser.error(f"--fit-clips {args.fit_clips}: {args.train_shards} has only {len(fit[1])} labelled clips")
    train = build_loader(loader_cfg, args.train_shards, train=True, text="caption", seed=args.seed)
    from tqdm import tqdm

    seen, losses = 0, []
    model.train()
    batches = _batches(train, fit, args.seed)
    for _ in tqdm(range(args.steps), desc="supervised events", unit="step"):
        video, labels = next(batches)
        first_logits, event_logits = model(video, args.mask_ratio)
        target = torch.zeros(len(labels), len(EVENT_VERBS)).scatter_(1, labels, 1.0)
        loss = F.cross_entropy(first_logits, labels[:, 0]) + F.binary_cross_entropy_with_logits(event_logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        seen += len(labels)
        losses.append(float(loss))
    model.eval()
    result = {"steps": args.steps, "clips_seen": seen, "mask_ratio": args.mask_ratio, "lr": args.lr,
              "seed": args.seed, "tower": args.tower, "fit_clips": args.fit_clips,
              "train_shards": args.train_shards, "test_shards": args.test_shards, "overrides": args.overrides,
              "final_loss": sum(losses[-20:]) / len(losses[-20:])}
    train_set = fit if fit is not None else _labelled_clips(plain(args.train_shards))
    test_set = _labelled_clips(plain(args.test_shards))
    result["train"] = _evaluate(model, *train_set)
    result["test"] = _evaluate(model, *test_set)
    result["test"]["prior_order_acc"] = prior_order_acc(train_set[1], test_set[1])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    t, te = result["train"], result["test"]
    what = f"{args.fit_clips} fixed clips" if fit is not None else "the training split"
    print(f"supervised events, {args.tower}, {args.steps} steps on {what}, mask {args.mask_ratio}: "
          f"train order {t['order_acc']:.1f} events {t['events_acc']:.1f}; test order {te['order_acc']:.1f} "
          f"events {te['events_acc']:.1f} (n={te['num_test']}; chance 50, a head without video "
          f"{te['prior_order_acc']:.1f} / prior ~17)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
