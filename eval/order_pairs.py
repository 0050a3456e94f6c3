"""Temporal-order pairs: does the model prefer a clip's own caption over the one with its two
events swapped ("turns blue, then moves left" against "moves left, then turns blue")?

The annotation file (``eval.retrieval.order_pairs``) is a JSON list, one entry per clip::

    [{"key": "clip_00410", "caption": "a cyan triangle moves down, then ...",
      "swapped_caption": "an orange circle disappears, then a cyan triangle ...", "pair_id": "..."}]

``key`` is the video's key in the test shards; ``pair_id`` is optional. The built-in benchmark
writes ``annotations/order_pairs/{val,test}.json`` (pipeline.synthetic.writers); a user can write
one for their own data. A clip counts as right when its own caption scores above the swapped
one, a tie as half (so a model blind to order sits at the 50% chance level, not below it).

That per-clip accuracy has a blind spot: a model whose two clips of a pair get nearly the same
features (it cannot tell them apart at all) lets exactly one clip of each pair win, whichever
way the two captions lean, and sits at exactly 50% with no spread. So the pairs whose two clips
are both in the file (same ``pair_id``) are also scored as Winoground scores them
(:func:`pair_scores`): ``text`` both clips prefer their own caption, ``video`` both captions
prefer their own clip, ``group`` both; chance 25, 25 and 16.7%. A model blind to order scores 0
on ``text``, not 50.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from pipeline.config import ConfigError

KEY = "eval.retrieval.order_pairs"
FIELDS = ("key", "caption", "swapped_caption")


def load_order_pairs(path: str | Path) -> list[dict]:
    """The entries of an order-pair file, checked; errors name the key and the entry."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{KEY}: {path} not found (the built-in benchmark writes it: "
                          f"python -m pipeline.synthetic; null skips order-pair scoring)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{KEY}: {path} is not valid JSON ({err})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{KEY}: {path} must be a non-empty JSON list of "
                          f"{{key, caption, swapped_caption}} entries")
    for i, entry in enumerate(data):
        missing = [f for f in FIELDS if not isinstance(entry, dict) or not isinstance(entry.get(f), str)
                   or not entry[f].strip()]
        if missing:
            raise ConfigError(f"{KEY}: {path} entry {i} has no text in {', '.join(missing)}")
        if entry["caption"].strip() == entry["swapped_caption"].strip():
            raise ConfigError(f"{KEY}: {path} entry {i} ({entry['key']}): caption and swapped_caption are equal")
    return data


def pair_accuracy(own: torch.Tensor, swapped: torch.Tensor) -> float:
    """% of clips whose own caption scores higher; ties count half."""
    wins = (own > swapped).double() + 0.5 * (own == swapped).double()
    return float(100.0 * wins.mean())


PAIR_CHANCE = {"text": 25.0, "video": 25.0, "group": 100.0 / 6.0}


def pair_scores(entries: list[dict], own: torch.Tensor, swapped: torch.Tensor,
                cross: torch.Tensor) -> dict | None:
    """Winoground's scores over the pairs whose two clips are both in ``entries`` (by
    ``pair_id``), in %: ``text`` both clips score their own caption above the swapped one,
    ``video`` each clip's caption scores its own clip above the partner clip, ``group`` both.

    own, swapped [N]: each clip against its own / swapped caption; cross [N captions, N clips].
    None when no pair is complete (no ``pair_id``s, or partners missing)."""
    members: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        if e.get("pair_id") is not None:
            members.setdefault(str(e["pair_id"]), []).append(i)
    pairs = [ix for ix in members.values() if len(ix) == 2]
    if not pairs:
        return None
    text = video = group = 0
    for a, b in pairs:
        t_ok = bool(own[a] > swapped[a]) and bool(own[b] > swapped[b])
        v_ok = bool(cross[a, a] > cross[a, b]) and bool(cross[b, b] > cross[b, a])
        text, video, group = text + t_ok, video + v_ok, group + (t_ok and v_ok)
    n = len(pairs)
    return {"num_pairs": n, "text": 100.0 * text / n, "video": 100.0 * video / n,
            "group": 100.0 * group / n, "chance": dict(PAIR_CHANCE)}


@torch.no_grad()
def score_order_pairs(model, emb, entries: list[dict], encode_texts: Callable, *,
                      use_vtm: bool) -> dict:
    """Order-pair accuracy by VTC similarity (and by the VTM logit when ``use_vtm``).

    emb: the test set's :class:`eval.retrieval.RetrievalEmbeddings` (videos encoded once);
    encode_texts(list[str]) -> (hidden, mask, feats) with the same text encoder.
    Entries whose key is not in the test set are counted in ``num_missing``.
    """
    index = {k: i for i, k in enumerate(emb.keys)}
    found = [e for e in entries if e["key"] in index]
    if not found:
        raise ValueError(f"{KEY}: none of its {len(entries)} keys is in the retrieval test set "
                         f"(e.g. {entries[0]['key']!r} vs {emb.keys[0]!r})")
    videos = torch.tensor([index[e["key"]] for e in found])
    texts = [e["caption"] for e in found] + [e["swapped_caption"] for e in found]
    hidden, mask, feats = encode_texts(texts)
    n = len(found)
    sim = (feats * emb.video_feats[videos].repeat(2, 1)).sum(-1)
    out = {"vtc": pair_accuracy(sim[:n], sim[n:]), "num_clips": n, "num_missing": len(entries) - n}
    # caption of each clip against every clip of the file: the video side of the pair scores
    cross = feats[:n] @ emb.video_feats[videos].t()                        # [caption, clip]
    scores = pair_scores(found, sim[:n], sim[n:], cross)
    if scores:
        out["pairs"] = scores
    if use_vtm:
        device = next(model.parameters()).device
        tokens = emb.video_tokens[videos].repeat(2, 1, 1)
        logits = []
        for s in range(0, 2 * n, 32):
            fused = model.fuse(hidden[s:s + 32].to(device), mask[s:s + 32].to(device), tokens[s:s + 32].to(device))
            logits.append(model.vtm_score(fused).float().cpu())
        logit = torch.cat(logits)
        out["vtm"] = pair_accuracy(logit[:n], logit[n:])
    out["chance"] = 50.0
    return out
