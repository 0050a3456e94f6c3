"""Where order is lost: can the text side, and can the video tower, each tell which event came first?

    python -m studies.order.probe --arm NAME=CHECKPOINT ... [--out results/studies/order/probe.json]

Order pairs score at chance in every run (README.md). That needs only one of the two towers to
miss order, so this probe asks each of them alone, with a linear read-out trained on the training
split and scored on the test split:

* labels: the two event verbs of a two-event clip, read from its canonical caption "X, then Y"
  (the benchmark writes one for every two-event clip; ``EVENT_VERBS``);
* the read-out: multinomial logistic regression on standardised features (full batch, fixed
  steps, L2), predicting the first event's verb;
* **order accuracy**: over test items whose two verbs differ, the share where the read-out ranks
  the first event's verb above the second's. A feature that knows which events happen but not
  in which order scores about 50%. Exactly 50 only if every verb comes first as often as second;
  some do not (``appears`` tends to open a clip, ``disappears`` to close it), so
  ``supervised.prior_order_acc`` measures what the training labels' order statistics give with
  no feature at all: 51.5 on the test clips from ``ret_train``'s labels, 50.8 with
  studies/more_data's added;
* **events accuracy**: a second read-out, one logistic output per verb, fitted to which verbs an
  item shows; over the same items, the share whose two verbs are its two highest outputs. Does
  the feature know which events happen at all, order aside?

Features:
* text (frozen MiniLM, as the model reads it): ``cls``, ``mean`` (of the token states). Training
  and test captions come with their clause swap (``swap_clauses``), the same words in the other
  order with the other label, so a caption's words alone cannot give the answer;
* video: the tower's ``cls`` token as evaluation computes it (sparsification on), and
  ``frames``: the per-frame means of its tokens, concatenated in time order (sparsification off,
  so every frame keeps its tokens);
* ``pixels``: the test clip's frames pooled to 16 x 16, concatenated: no model at all.

And one zero-shot check with no read-out, on the model's own VTC scores: **verb negatives**
(studies/verb_negatives): does a test clip prefer its caption over the same caption with one
event replaced? Scored three ways, so that a text-side prior cannot pass for video
understanding: against the clip itself, against another test clip's feature, and against the
mean test clip. Only the gap between the first and the other two is the video's doing.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from .caption_order import swap_clauses

EVENT_VERBS = ("moves", "grows", "shrinks", "rotates", "turns", "appears", "disappears")
_CANONICAL = re.compile(r"^(?P<a>.+?), then (?P<b>.+)$")


def event_verbs(caption: str) -> tuple[int, int] | None:
    """(first, second) verb index of a canonical two-event caption "X, then Y", else None."""
    m = _CANONICAL.match(caption.strip())
    if not m:
        return None
    found = []
    for clause in (m.group("a"), m.group("b")):
        verbs = [EVENT_VERBS.index(w) for w in clause.split() if w in EVENT_VERBS]
        if not verbs:
            return None
        found.append(verbs[0])
    return found[0], found[1]


def clip_labels(captions: list[str]) -> tuple[int, int] | None:
    for caption in captions:
        label = event_verbs(caption)
        if label is not None:
            return label
    return None


def _fit_readout(train_x: torch.Tensor, test_x: torch.Tensor, target: torch.Tensor, loss_fn,
                 steps: int, l2: float) -> torch.Tensor:
    """A linear read-out (one output per verb) on features standardised by the training split,
    fitted full-batch from zeros (so deterministic) -> its test logits [N, verbs]."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    w = torch.zeros(a.shape[1], len(EVENT_VERBS), requires_grad=True)
    bias = torch.zeros(len(EVENT_VERBS), requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=1e-2)
    for _ in range(steps):
        loss = loss_fn(a @ w + bias, target) + l2 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return b @ w + bias


def order_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_labels: torch.Tensor, steps: int = 300, l2: float = 1e-2) -> dict:
    """Fit the first-verb read-out on (train_x, train_y); score it on test items [N, 2] of
    (first, second) verbs. Returns order accuracy (items with two different verbs) and first-verb
    accuracy (all items), in percent."""
    logits = _fit_readout(train_x, test_x, train_y, F.cross_entropy, steps, l2)
    first, second = test_labels[:, 0], test_labels[:, 1]
    differ = first != second
    rows = torch.arange(len(first))
    wins = (logits[rows, first] > logits[rows, second])[differ].float()
    return {"order_acc": float(100 * wins.mean()) if len(wins) else None,
            "first_verb_acc": float(100 * (logits.argmax(1) == first).float().mean()),
            "num_test": int(differ.sum()), "num_train": int(len(train_y))}


def events_accuracy(train_x: torch.Tensor, train_labels: torch.Tensor, test_x: torch.Tensor,
                    test_labels: torch.Tensor, steps: int = 300, l2: float = 1e-2) -> float | None:
    """Which events happen, order aside: a second read-out (one logistic output per verb) fitted
    to the verbs each training item shows; over test items with two different verbs, the percent
    whose two verbs are its two highest outputs."""
    target = torch.zeros(len(train_labels), len(EVENT_VERBS))
    target[torch.arange(len(train_labels))[:, None], train_labels] = 1.0
    logits = _fit_readout(train_x, test_x, target, F.binary_cross_entropy_with_logits, steps, l2)
    top2 = logits.topk(2, dim=1).indices
    first, second = test_labels[:, 0], test_labels[:, 1]
    differ = first != second
    both = ((top2 == first[:, None]).any(1) & (top2 == second[:, None]).any(1))[differ].float()
    return float(100 * both.mean()) if len(both) else None


def _captions_with_swaps(items: list[tuple[str, tuple[int, int]]]) -> list[tuple[str, tuple[int, int]]]:
    out = []
    for caption, (a, b) in items:
        out.append((caption, (a, b)))
        swapped = swap_clauses(caption)
        if swapped is not None:
            out.append((swapped, (b, a)))
    return out


def _clips(model, shards: str, sparsify: bool):
    """(keys, captions per clip, cls [N, D], per-frame token means [N, T, D], pooled pixels [N, F])."""
    from eval.embed import loader_settings
    from train.data import build_loader

    cfg = loader_settings(model, batch_size=16)
    keys, captions, cls, frames, pixels = [], [], [], [], []
    with torch.no_grad():
        for batch in build_loader(cfg, shards, train=False, text="caption", seed=0):
            video = batch["video"]
            on = model._encode_video(video, mask=False, sparsify=sparsify)
            off = model._encode_video(video, mask=False, sparsify=False)
            t, gh, gw = off.grid
            cls.append(on.tokens[:, 0])
            frames.append(off.tokens[:, 1:].reshape(len(video), t, gh * gw, -1).mean(2))
            pixels.append(F.adaptive_avg_pool2d(video.flatten(0, 1), 16).reshape(len(video), -1))
            keys += batch["key"]
            captions += [m["captions"] for m in batch["meta"]]
    return keys, captions, torch.cat(cls), torch.cat(frames), torch.cat(pixels)


def _text_features(model, texts: list[str]) -> dict[str, torch.Tensor]:
    from eval.embed import loader_settings
    from train.data.text import load_tokenizer

    tokenizer = load_tokenizer(model.cfg.text.path)
    max_len = loader_settings(model).max_len
    cls, mean = [], []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            enc = tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=max_len,
                            return_tensors="pt")
            hidden = model.text(enc["input_ids"], enc["attention_mask"])
            keep = enc["attention_mask"][..., None].to(hidden.dtype)
            cls.append(hidden[:, 0])
            mean.append((hidden * keep).sum(1) / keep.sum(1))
    return {"cls": torch.cat(cls), "mean": torch.cat(mean)}


def verb_negative_check(model, test_shards: str, seed: int = 0) -> dict:
    """Percent of test captions scored above their verb negative by their own clip, by another
    test clip (a fixed permutation) and by the mean test clip (VTC features, as evaluation
    computes them)."""
    import random

    from eval.embed import embed_texts, embed_videos, loader_settings
    from studies.verb_negatives.verbs import replace_event
    from train.data import build_loader

    captions = {}
    for batch in build_loader(loader_settings(model, batch_size=16), test_shards, train=False,
                              text="caption", seed=0):
        captions.update({k: m["captions"] for k, m in zip(batch["key"], batch["meta"])})
    emb = embed_videos(model, test_shards, progress=False)
    video = torch.from_numpy(emb.matrix())
    rng = random.Random(seed)
    rows, own, negative = [], [], []
    for i, key in enumerate(emb.keys):
        for caption in captions.get(key, []):
            neg = replace_event(caption, rng)
            if neg is not None:
                rows.append(i)
                own.append(caption)
                negative.append(neg)
    if not rows:
        return {"num_captions": 0}
    t_own, t_neg = embed_texts(model, own), embed_texts(model, negative)
    perm = torch.randperm(len(video), generator=torch.Generator().manual_seed(seed))
    mean = F.normalize(video.mean(0, keepdim=True), dim=-1).expand(len(rows), -1)

    def acc(v: torch.Tensor) -> float:
        return float(100 * ((v * t_own).sum(-1) > (v * t_neg).sum(-1)).float().mean())

    return {"own_clip": acc(video[rows]), "other_clip": acc(video[perm][rows]), "mean_clip": acc(mean),
            "num_captions": len(rows)}


def probe_arm(checkpoint: str, train_shards: str, test_shards: str) -> dict:
    from train.model import SMAUG

    model = SMAUG.from_pretrained(checkpoint).eval()
    split = {}
    for name, shards in (("train", train_shards), ("test", test_shards)):
        keys, captions, cls, frames, pixels = _clips(model, shards, sparsify=True)
        labelled = [i for i, c in enumerate(captions) if clip_labels(c) is not None]
        if not labelled:
            raise SystemExit(f"no clip of {shards} has a two-event caption 'X, then Y'")
        split[name] = {
            "labels": torch.tensor([clip_labels(captions[i]) for i in labelled]),
            "video": {"cls": cls[labelled], "frames": frames[labelled].flatten(1), "pixels": pixels[labelled]},
            "texts": _captions_with_swaps([(c, event_verbs(c)) for i in labelled for c in captions[i]
                                           if event_verbs(c) is not None]),
        }
    out: dict = {"checkpoint": checkpoint, "video": {}, "text": {}}
    tr, te = split["train"], split["test"]
    for kind in ("cls", "frames", "pixels"):
        out["video"][kind] = order_accuracy(tr["video"][kind], tr["labels"][:, 0], te["video"][kind], te["labels"])
        out["video"][kind]["events_acc"] = events_accuracy(tr["video"][kind], tr["labels"],
                                                           te["video"][kind], te["labels"])
    text_tr = _text_features(model, [c for c, _ in tr["texts"]])
    text_te = _text_features(model, [c for c, _ in te["texts"]])
    labels_tr = torch.tensor([l for _, l in tr["texts"]])
    labels_te = torch.tensor([l for _, l in te["texts"]])
    for kind in ("cls", "mean"):
        out["text"][kind] = order_accuracy(text_tr[kind], labels_tr[:, 0], text_te[kind], labels_te)
        out["text"][kind]["events_acc"] = events_accuracy(text_tr[kind], labels_tr, text_te[kind], labels_te)
    out["verb_negatives"] = verb_negative_check(model, test_shards)
    return out


def main(argv: list[str] | None = None) -> int:
    from studies.levers import add_model_flags, check_model_flags, use_model_of_flags

    parser = argparse.ArgumentParser(prog="studies.order.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--train-shards", default="data/shards/ret_train")
    parser.add_argument("--test-shards", default="data/shards/ret_test")
    parser.add_argument("--out", default="results/studies/order/probe.json")
    add_model_flags(parser)
    args = parser.parse_args(argv)
    check_model_flags(parser, args)
    use_model_of_flags(args)
    torch.manual_seed(0)
    result = {"chance_order_acc": 50.0, "train_shards": args.train_shards, "test_shards": args.test_shards,
              "arms": {}}
    for spec in args.arm:
        name, sep, ckpt = spec.partition("=")
        if not sep or not name or not ckpt:
            parser.error(f"--arm {spec!r}: expected NAME=CHECKPOINT")
        r = result["arms"][name] = probe_arm(ckpt, args.train_shards, args.test_shards)
        cells = [f"{side} {kind} {v['order_acc']:.1f} ({v['events_acc']:.0f})" for side in ("text", "video")
                 for kind, v in r[side].items() if v["order_acc"] is not None]
        n = r["video"]["cls"]["num_test"]
        vn = r["verb_negatives"]
        print(f"{name:20s}  order accuracy, chance 50 (events accuracy in brackets), {n} test clips: "
              + "; ".join(cells) + f"; verb negatives own/other/mean clip {vn.get('own_clip', float('nan')):.1f}/"
              f"{vn.get('other_clip', float('nan')):.1f}/{vn.get('mean_clip', float('nan')):.1f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
