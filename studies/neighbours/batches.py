"""Neighbour batches: each training batch is built from groups of clips whose captions read alike.

Why: with 16 random clips out of 350, in-batch VTC rarely shows a clip the captions it is easy to
confuse with (same shapes, one colour or one event apart, or the same two events in the other
order), so nothing makes the tower tell such clips apart. The two clips of an order pair have
video features with cosine 0.96-0.99 after pre-training (studies/order/README.md), and a batch
holds both of them about 4% of the time.

How, for any caption set (nothing reads the benchmark's pair table or its metadata):
1. every clip gets a text vector: the mean of its captions' sentence embeddings from the frozen
   text encoder (all-MiniLM-L6-v2 read as a sentence encoder: mean over tokens, unit length);
2. each epoch, in a random order of anchors, an anchor not yet placed takes the ``group - 1``
   unplaced clips nearest to it (cosine of the vectors); the groups follow one another, so a
   batch of 16 holds 16 / group of them (hard-negative batch construction, as in the hard
   negative mining of contrastive retrieval, done once per epoch rather than per step).

It is a change to the order in which the training loader reads samples, nothing else: frames,
crops and captions are drawn as before (they depend on seed, epoch and key only). It replaces
the shuffle buffer of ``train.data.shards`` and, before the loader's workers start, computes the
vectors of the shards' clips once (the workers inherit them). Grouping happens within one
worker's share of the shards, so run it with ``loader.num_workers=1`` (one worker decodes about
240 clips/s, training reads 18).
"""

from __future__ import annotations

import io
import json
import logging
import random
import tarfile
from typing import Iterable, Iterator

import numpy as np
import torch

import train.data.cpu_backend as cpu_backend
import train.data.shards as shards

log = logging.getLogger(__name__)

# clip_identity -> unit text vector of the clip; filled in the main process before the workers fork.
VECTORS: dict[tuple, np.ndarray] = {}
_state = {"group": 0, "share": 1.0}


def _texts(meta: dict) -> list[str]:
    return [c for c in meta.get("captions") or [] if isinstance(c, str) and c.strip()]


def clip_identity(key: str, meta: dict) -> tuple[str, tuple[str, ...]]:
    """What a text vector belongs to: the clip's key and its captions. The key alone is not
    enough: two caption sets joined into one shard list may both number their clips from
    ``clip_00000`` (the benchmark's pretrain split and studies/more_data do), and then one clip's
    vector would stand in for the other's, and the two would be paired as each other's nearest."""
    return str(meta.get("key") or key), tuple(_texts(meta))


def read_captions(urls: Iterable[str]) -> dict[tuple[str, tuple[str, ...]], list[str]]:
    """clip_identity -> captions, from the ``.json`` members of WebDataset shards (videos are not
    read). Members that are not valid sample metadata are left out: the loader skips and counts them."""
    captions: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for url in urls:
        try:
            tar = tarfile.open(url)
        except (OSError, tarfile.TarError) as err:
            log.warning("neighbour batches: cannot read %s (%s); its clips get no neighbours", url, err)
            continue
        with tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".json"):
                    continue
                try:
                    meta = json.load(io.TextIOWrapper(tar.extractfile(member), encoding="utf-8"))
                except (ValueError, UnicodeDecodeError, tarfile.TarError, OSError):
                    continue
                if not isinstance(meta, dict):
                    continue
                texts = _texts(meta)
                if texts:
                    captions[clip_identity(member.name.rsplit("/", 1)[-1].split(".", 1)[0], meta)] = texts
    return captions


@torch.no_grad()
def sentence_vectors(texts: list[str], text_dir=None, batch_size: int = 128) -> np.ndarray:
    """Unit-length mean-pooled sentence embeddings of ``texts`` from the frozen text encoder."""
    from pipeline.text_encoder import resolve_text_encoder_dir
    from train.data.text import load_tokenizer
    from train.model.text_encoder import load_bert

    folder = resolve_text_encoder_dir(text_dir)
    tokenizer = load_tokenizer(folder)
    bert = load_bert(folder).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
        hidden = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out).numpy() if out else np.zeros((0, 1), dtype=np.float32)


def clip_vectors(captions: dict, text_dir=None) -> dict:
    """The same keys as ``captions`` -> the unit mean of the captions' sentence vectors."""
    keys = list(captions)
    flat = [t for k in keys for t in captions[k]]
    if not flat:
        return {}
    vectors = sentence_vectors(flat, text_dir)
    out, i = {}, 0
    for key in keys:
        v = vectors[i:i + len(captions[key])].mean(0)
        out[key] = v / max(float(np.linalg.norm(v)), 1e-12)
        i += len(captions[key])
    return out


def group_order(keys: list, vectors: dict, group: int, rng: random.Random,
                share: float = 1.0) -> list[int]:
    """Indices of ``keys`` in neighbour groups of ``group``: a random anchor, then its nearest
    unplaced clips. A group is kept with probability ``share`` (else its clips go alone, mixed in
    at random), so about ``share`` of each batch comes in groups. Keys without a vector follow
    at the end in random order."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    known = [i for i, k in enumerate(keys) if k in vectors]
    unknown = [i for i, k in enumerate(keys) if k not in vectors]
    rng.shuffle(unknown)
    if not known:
        return unknown
    matrix = np.stack([vectors[keys[i]] for i in known])
    sim = matrix @ matrix.T
    np.fill_diagonal(sim, -np.inf)
    placed = np.zeros(len(known), dtype=bool)
    anchors = list(range(len(known)))
    rng.shuffle(anchors)
    groups: list[list[int]] = []
    for a in anchors:
        if placed[a]:
            continue
        placed[a] = True
        members = [known[a]]
        for _ in range(group - 1):
            row = np.where(placed, -np.inf, sim[a])
            if not np.isfinite(row).any():
                break
            b = int(np.argmax(row))
            placed[b] = True
            members.append(known[b])
        groups.append(members)
    if share < 1.0:
        # keep a group with probability share, else its clips go alone; then the units are
        # shuffled so kept groups and single clips mix in every batch
        units = []
        for members in groups:
            units.extend([members] if rng.random() < share else [[i] for i in members])
        rng.shuffle(units)
        groups = units
    order = [i for members in groups for i in members]
    return order + unknown


def grouped_shuffle(stream, bufsize: int, rng: random.Random) -> Iterator:
    """Stand-in for ``train.data.shards._shuffled``: the whole share of the epoch in neighbour
    groups (``bufsize`` is ignored: grouping needs every clip at once)."""
    samples = []
    for item in stream:
        if isinstance(item, shards.Skipped):
            yield item      # counted at once, as the shuffle buffer does
            continue
        samples.append(item)
    order = group_order([clip_identity(s.key, s.meta) for s in samples], VECTORS, _state["group"], rng,
                        _state["share"])
    for i in order:
        yield samples[i]


_original_iter_cpu_batches = cpu_backend.iter_cpu_batches
_original_shuffled = shards._shuffled


def _iter_cpu_batches_with_vectors(dataset, cfg):
    # Runs in the main process before the DataLoader forks its workers: the vectors are computed
    # once per run (the first epoch), not once per worker and epoch.
    if dataset.train:
        missing = [u for u in dataset.urls if u not in _state.setdefault("read", set())]
        if missing:
            VECTORS.update(clip_vectors(read_captions(missing)))
            _state["read"].update(missing)
            log.info("neighbour batches: text vectors for %d clips, groups of %d", len(VECTORS), _state["group"])
    return _original_iter_cpu_batches(dataset, cfg)


def install(group: int, share: float = 1.0) -> None:
    """Make training batches out of neighbour groups of ``group`` clips (the CPU loader), about
    ``share`` of each batch (the rest single clips in random order)."""
    if group < 2:
        raise ValueError(f"a neighbour group needs at least 2 clips, got {group}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    _state["group"], _state["share"] = group, share
    shards._shuffled = grouped_shuffle
    cpu_backend.iter_cpu_batches = _iter_cpu_batches_with_vectors


def uninstall() -> None:
    shards._shuffled = _original_shuffled
    cpu_backend.iter_cpu_batches = _original_iter_cpu_batches
    _state["group"], _state["share"] = 0, 1.0
