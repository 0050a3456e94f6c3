"""Which tokens of a caption tell its earlier event, and which its later one.

English marks the order of two events with a connective between their clauses: "X, then Y",
"first X, and then Y", "X and afterwards Y", "X before Y" tell X first; "Y after X" tells X
first too, from the second clause. So a caption with exactly one of these words splits into a
first-event clause and a second-event clause without a parser, on the token ids alone (the
connectives are single WordPiece tokens in BERT's uncased vocabulary). Captions with none, with
more than one, with the connective opening the sentence ("after the rain, ...", whose
clauses this rule would read the wrong way round) or after a single word ("the then
president": no connective there) are left whole: no split.

The same rule as ``studies/order/caption_order.py``'s swaps, read here as a split rather than
a rewrite; it applies to any caption set and never looks at the benchmark's pair table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

FORWARD = ("then", "afterwards", "before")   # the clause before the word happened first
BACKWARD = ("after",)                        # the clause after the word happened first


@dataclass(frozen=True)
class Connectives:
    forward: tuple[int, ...]     # token ids of FORWARD
    backward: tuple[int, ...]    # token ids of BACKWARD
    special: tuple[int, ...]     # [CLS], [SEP], [PAD]: never part of a clause

    @classmethod
    def from_vocab(cls, vocab_file: Path, special: tuple[int, ...]) -> "Connectives":
        with Path(vocab_file).open(encoding="utf-8") as f:
            index = {line.rstrip("\n"): i for i, line in enumerate(f)}
        missing = [w for w in FORWARD + BACKWARD if w not in index]
        if missing:
            raise ValueError(f"{vocab_file}: vocabulary lacks the connective(s) {', '.join(missing)} "
                             "as whole tokens; the clause split needs each as one token")
        return cls(tuple(index[w] for w in FORWARD), tuple(index[w] for w in BACKWARD), tuple(special))


def clause_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor, conn: Connectives):
    """input_ids, attention_mask [B, L] -> (first, second [B, L] bool, split [B] bool).

    ``first`` marks the tokens of the clause telling the earlier event, ``second`` the later
    one; the connective and special tokens are in neither. Where ``split`` is False both masks
    are the caption's words (no order to tell)."""
    ids = input_ids
    words = attention_mask.bool() & ~torch.isin(ids, torch.tensor(conn.special, device=ids.device))
    fwd = torch.isin(ids, torch.tensor(conn.forward, device=ids.device)) & words
    bwd = torch.isin(ids, torch.tensor(conn.backward, device=ids.device)) & words
    is_conn = fwd | bwd
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    at = torch.where(is_conn, pos, torch.full_like(pos, ids.shape[1])).min(1).values   # [B]
    before = words & (pos < at[:, None])
    after = words & (pos > at[:, None])
    split = (is_conn.sum(1) == 1) & (before.sum(1) >= 2) & after.any(1)
    backward = bwd.any(1)[:, None]
    first = torch.where(backward, after, before)
    second = torch.where(backward, before, after)
    whole = words & ~is_conn
    first = torch.where(split[:, None], first, whole)
    second = torch.where(split[:, None], second, whole)
    return first, second, split
