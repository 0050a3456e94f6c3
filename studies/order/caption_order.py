"""Caption-order negatives: a caption with its events told in the other order is a negative
for its own clip (the text half of "Test of Time"'s time-order contrast, TACT; HiTeA's
temporal negatives are the video half, ``objectives.order`` in train/model).

Why the text half: all-MiniLM-L6-v2 reads "X, then Y" and "Y, then X" as nearly the same
sentence (cosine 0.994 between the canonical captions of an order pair, 0.918 between two
paraphrases of one clip), and contrastive pre-training never shows it a caption that differs
from the positive only in order. Without such negatives a VTC model cannot rank a clip's own
caption above its swap, whatever its video tower reads.

The swap is a rule over English temporal connectives, so it applies to any caption set (a
caption with no connective simply gets no negative), never to the benchmark's pair table:

* "before" <-> "after" (every occurrence): "X before it Y" -> "X after it Y", "Y after X" ->
  "Y before X";
* "X, then Y" / "first X and then Y" / "X and afterwards Y": when Y names its own subject,
  the clauses trade places ("Y, then X"); when Y continues X's subject ("a square moves left,
  then turns blue"), the subject cannot be cut out of X without a parser, so the order is
  reversed with a connective instead ("X after it Y").

``same_words`` keeps only swaps whose negative is a reordering of the caption's own words: two
clauses with their own subjects trade places around the connective they had ("X before Y" ->
"Y before X", "first X, and then Y" -> "first Y, and then X"). The other swaps leave a word of
their own in the negative (before <-> after, "after it"), and a trainable text side learns that
word's frequency instead of order: "before" is three times as common as "after" in the built-in
captions, so "before" alone ranks 75% of its captions above their swaps. With the same words,
nothing but their order tells a caption from its swap.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

_BEFORE_AFTER = re.compile(r"\b(before|after)\b", re.IGNORECASE)
_THEN = re.compile(
    r"^(?:first\s+)?(?P<a>.+?)(?:\s*,)?\s+(?:and\s+)?(?:then|afterwards)\s*,?\s+(?P<b>\S.*)$",
    re.IGNORECASE)
_FIRST = re.compile(r"\bfirst\s+", re.IGNORECASE)
# The same two patterns with the connective kept whole, for swaps that keep every word.
_CLAUSES_THEN = re.compile(
    r"^(?P<first>first\s+)?(?P<a>.+?)(?P<conn>(?:\s*,)?\s+(?:and\s+)?(?:then|afterwards)\s*,?\s+)(?P<b>\S.*)$",
    re.IGNORECASE)
_CLAUSES_BEFORE_AFTER = re.compile(r"^(?P<a>.+?)(?P<conn>\s*,?\s+(?:before|after)\s+)(?P<b>\S.*)$",
                                   re.IGNORECASE)
# Words that open a clause with its own subject ("then a blue circle appears").
_SUBJECT_OPENERS = frozenset("""
a an the this that these those one two three four five some another each every both
he she it they we you i his her its their my your our someone somebody something people
""".split())
# Openers that name a subject of their own rather than point back to the first clause's ("it").
_NAMING_OPENERS = _SUBJECT_OPENERS - frozenset("he she it they we you i his her its their".split())


def _swap_word(match: re.Match) -> str:
    word = match.group(0)
    other = "after" if word.lower() == "before" else "before"
    return other.capitalize() if word[0].isupper() else other


def swap_clauses(caption: str) -> str | None:
    """The caption's two clauses trading places around the connective they had, every word
    kept ("X, then Y" -> "Y, then X", "X before Y" -> "Y before X"), or None unless it has exactly
    one temporal connective and each clause names its own subject."""
    text = " ".join(caption.split())
    if len(_BEFORE_AFTER.findall(text)) + len(re.findall(r"\b(?:then|afterwards)\b", text, re.I)) != 1:
        return None
    m = _CLAUSES_THEN.match(text) or _CLAUSES_BEFORE_AFTER.match(text)
    if m is None:
        return None
    a, b = m.group("a").strip(" ,"), m.group("b").strip()
    if len(a.split()) < 2 or a.split()[0].lower() not in _NAMING_OPENERS \
            or b.split()[0].lower() not in _NAMING_OPENERS:
        return None
    first = m.groupdict().get("first") or ""
    return f"{first}{b}{m.group('conn')}{a}"


def reverse_event_order(caption: str, same_form: bool = False, same_words: bool = False) -> str | None:
    """The caption with its events in the other order, or None when it has no temporal
    connective this rule reads (then, afterwards, before, after).

    ``same_form``: only swaps that keep the caption's form (before <-> after, two clauses that
    trade places); None for the one-subject rewrite "X after it Y". That rewrite differs from
    its "X, then Y" in form, so a trainable text side can tell the two apart without reading
    order (studies/text_adapter/README.md).
    ``same_words``: only swaps that reorder the caption's own words (``swap_clauses``)."""
    if same_words:
        return swap_clauses(caption)
    text = " ".join(caption.split())
    if _BEFORE_AFTER.search(text):
        return _BEFORE_AFTER.sub(_swap_word, text)
    m = _THEN.match(text)
    if m is None:
        return None
    a, b = m.group("a").strip(" ,"), m.group("b").strip()
    a = _FIRST.sub("", a)   # "X first moves left and then ..." -> no "first" left in the swap
    if len(a.split()) < 2 or not b:   # "the then president": "then" is no connective here
        return None
    if b.split()[0].lower() in _SUBJECT_OPENERS:
        return f"{b}, then {a}"
    return None if same_form else f"{a} after it {b}"


def caption_order_loss(video: torch.Tensor, own: torch.Tensor, swapped: torch.Tensor,
                       temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """video, own, swapped [K, E] L2-normalised -> (loss, share of clips already preferring
    their own caption, 0-d). Cross-entropy over (own caption, swapped caption), target: own;
    the same two-way form as ``objectives.order`` with the roles of text and video exchanged."""
    real = (video * own).sum(-1)
    fake = (video * swapped).sum(-1)
    logits = torch.stack([real, fake], dim=1) / temperature
    target = torch.zeros(len(video), dtype=torch.long, device=video.device)
    return F.cross_entropy(logits, target), (real > fake).float().mean().detach()
