"""Can this tower learn events at all from these clips? Supervise it directly and see.

    python -m studies.order.supervised [--steps 400] [--mask-ratio 0.0] [--out FILE] [key=value ...]

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
objective is what misses them; if it does not, the input (frames, size) is the limit. The
loader is the pre-training loader (augmented, ``loader:`` settings, any override).
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


class EventTower(nn.Module):
    def __init__(self, video_cfg) -> None:
        super().__init__()
        from train.model.video_encoder import VideoEncoder

        self.video = VideoEncoder(video_cfg, None)
        self.first = nn.Linear(video_cfg.width, len(EVENT_VERBS))
        self.events = nn.Linear(video_cfg.width, len(EVENT_VERBS))

    def forward(self, video: torch.Tensor, mask_ratio: float = 0.0):
        cls = self.video(video, mask_ratio=mask_ratio).tokens[:, 0]
        return self.first(cls), self.events(cls)


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
    parser.add_argument("--out", default="results/studies/order/supervised.json")
    parser.add_argument("overrides", nargs="*", help="params overrides (loader.*, model.video.*)")
    args = parser.parse_args(argv)
    if args.steps < 1 or not 0.0 <= args.mask_ratio < 1.0:
        parser.error(f"--steps must be >= 1 and --mask-ratio in [0, 1): got {args.steps}, {args.mask_ratio}")
    params = load_params(args.params, overrides=args.overrides)
    loader_cfg = section(params, LoaderConfig, "loader")
    model_cfg = section(params, ModelConfig, "model")
    torch.manual_seed(args.seed)
    model = EventTower(model_cfg.video)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    train = build_loader(loader_cfg, args.train_shards, train=True, text="caption", seed=args.seed)
    from tqdm import tqdm

    step, seen, losses = 0, 0, []
    bar = tqdm(total=args.steps, desc="supervised events", unit="step")
    model.train()
    while step < args.steps:
        for batch in train:
            rows, labels = _labelled(batch)
            if len(rows) == 0:
                continue
            first_logits, event_logits = model(batch["video"][rows], args.mask_ratio)
            target = torch.zeros(len(rows), len(EVENT_VERBS)).scatter_(1, labels, 1.0)
            loss = F.cross_entropy(first_logits, labels[:, 0]) + F.binary_cross_entropy_with_logits(event_logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(rows)
            losses.append(float(loss))
            bar.update(1)
            if step >= args.steps:
                break
    bar.close()
    model.eval()
    result = {"steps": args.steps, "clips_seen": seen, "mask_ratio": args.mask_ratio, "lr": args.lr,
              "seed": args.seed, "overrides": args.overrides,
              "final_loss": sum(losses[-20:]) / len(losses[-20:])}
    for name, shards in (("train", args.train_shards), ("test", args.test_shards)):
        firsts, events, labels = [], [], []
        with torch.no_grad():
            for batch in build_loader(loader_cfg, shards, train=False, text="caption", seed=0):
                rows, lab = _labelled(batch)
                if len(rows):
                    f, e = model(batch["video"][rows])
                    firsts.append(f), events.append(e), labels.append(lab)
        result[name] = scores(torch.cat(firsts), torch.cat(events), torch.cat(labels))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    t, te = result["train"], result["test"]
    print(f"supervised events, {args.steps} steps, mask {args.mask_ratio}: train order {t['order_acc']:.1f} "
          f"events {t['events_acc']:.1f}; test order {te['order_acc']:.1f} events {te['events_acc']:.1f} "
          f"(n={te['num_test']}; chance 50 / prior ~17)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
