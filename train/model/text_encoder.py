"""The text tower: a BERT (``transformers.BertModel``) from a local checkpoint folder.

By default the offline all-MiniLM-L6-v2 (6 layers, hidden 384, the bert-base-uncased
WordPiece vocabulary) found by ``pipeline.text_encoder``; any local BERT folder works through
``model.text.path``. Nothing is downloaded (``local_files_only=True``).

``model.text.init: random`` builds the folder's architecture (or a ``TEXT_ARCHS`` shape such as
``bert-base`` through ``model.text.arch``) with random weights and the folder's vocabulary:
for counting the cost of a model whose checkpoint is not at hand, and for tests.

What trains (``model.text``): the top ``num_layers - freeze_layers`` layers, at
``lr_scale`` x the run's learning rate (``SMAUG.lr_scales``).

Cost control on small machines (``model.text``):
* ``num_layers``: use only the first N BERT layers;
* ``freeze_layers``: the embeddings and the first N layers are frozen and run under
  ``torch.no_grad`` (no activations kept, no backward through them), so the text tower costs
  one cheap forward for its lower part. The trainable top layers still adapt the text
  features to video;
* the caller trims padding columns beyond the longest caption in the batch.

Layers are run one by one (not through ``BertModel.forward``) so the frozen prefix can sit
under ``no_grad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.config import ConfigError
from pipeline.text_encoder import resolve_text_encoder_dir

from .config import TEXT_ARCHS, TextConfig


@dataclass(frozen=True)
class SpecialTokens:
    cls: int
    sep: int
    pad: int
    mask: int

    @classmethod
    def from_vocab(cls, vocab_file: Path) -> "SpecialTokens":
        index = {}
        with vocab_file.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                index.setdefault(line.rstrip("\n"), i)
        missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]") if t not in index]
        if missing:
            raise ConfigError(f"model.text.path: {vocab_file}: vocabulary lacks {', '.join(missing)}")
        return cls(index["[CLS]"], index["[SEP]"], index["[PAD]"], index["[MASK]"])


def load_bert(path: Path, *, random: bool = False, arch: dict | None = None) -> nn.Module:
    """The BertModel in ``path`` (no pooler, SDPA attention); ``random``: its architecture,
    reshaped by ``arch`` (BertConfig fields), with freshly initialised weights."""
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    if random:
        config = BertConfig.from_pretrained(str(path), local_files_only=True, **(arch or {}))
        config._attn_implementation = "sdpa"
        return BertModel(config, add_pooling_layer=False)

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "unused weights" notes about pooler/position_ids
    try:
        return BertModel.from_pretrained(
            str(path), local_files_only=True, add_pooling_layer=False, attn_implementation="sdpa"
        )
    except OSError as err:
        raise ConfigError(f"model.text.path: cannot load a BERT checkpoint from {path}: {err}") from err
    finally:
        hf_logging.set_verbosity(previous)


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, *, weights: bool = True) -> None:
        """``weights=False``: the architecture only, for a caller that loads a SMAUG checkpoint
        over it (which holds the whole BERT), so the folder needs no weights: the copy of the
        vocabulary and config a checkpoint keeps (``train.checkpoint``) is enough."""
        super().__init__()
        self.cfg = cfg
        self.path = resolve_text_encoder_dir(cfg.path)
        arch = TEXT_ARCHS.get(cfg.arch) if cfg.arch else None
        if weights:
            self.bert = load_bert(self.path, random=cfg.init == "random", arch=arch)
        else:
            with torch.random.fork_rng(devices=[]):  # overwritten anyway: leave the caller's RNG as it was
                self.bert = load_bert(self.path, random=True, arch=arch)
        total = len(self.bert.encoder.layer)
        n = cfg.num_layers or total
        if n > total:
            raise ConfigError(f"model.text.num_layers: {n} but {self.path} has {total} layers")
        self.bert.encoder.layer = self.bert.encoder.layer[:n]
        self.frozen = min(cfg.freeze_layers, n)
        if self.frozen > 0:
            for module in [self.bert.embeddings, *self.bert.encoder.layer[: self.frozen]]:
                module.requires_grad_(False)
        self.special = SpecialTokens.from_vocab(self.path / "vocab.txt")
        self.hidden_size = self.bert.config.hidden_size
        self.vocab_size = self.bert.config.vocab_size
        if cfg.max_len > self.bert.config.max_position_embeddings:
            raise ConfigError(
                f"model.text.max_len: {cfg.max_len} exceeds the checkpoint's "
                f"{self.bert.config.max_position_embeddings} positions"
            )

    def train(self, mode: bool = True) -> "TextEncoder":
        # The frozen prefix is a fixed feature extractor: no dropout in it, ever.
        super().train(mode)
        if self.frozen > 0:
            self.bert.embeddings.eval()
            for layer in self.bert.encoder.layer[: self.frozen]:
                layer.eval()
        return self

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, L] -> hidden [B, L, Dt]."""
        # Additive mask [B, 1, 1, L]: 0 where attended, a large negative on padding.
        bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        layers = self.bert.encoder.layer
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen == 0):
            h = self.bert.embeddings(input_ids=input_ids)
            for layer in layers[: self.frozen]:
                h = _layer_out(layer(h, bias))
        for layer in layers[self.frozen :]:
            h = _layer_out(layer(h, bias))
        return h


def _layer_out(out):
    # transformers 5 returns a tensor, 4.x a tuple (hidden, ...)
    return out[0] if isinstance(out, tuple) else out
