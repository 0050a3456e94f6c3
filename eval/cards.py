"""Protocol cards: what makes a benchmark number comparable with the published ones.

A preset's ``card:`` section pins the split, the item count and annotation-file sha256 of each
split, the test frame count and how frames are sampled, captions per video, and the metric's
exact rule. ``python -m eval.benchmarks check NAME`` verifies a user's copy against it and names
every field that differs (``test.sha256``, ``test.items``); the tables put a published figure
beside ours only when the card matched. A null ``items`` or ``sha256`` is not pinned: check prints
what the user's copy has, so whoever holds the release files can pin them.

The peers' most common "does not reproduce" reports are exactly these fields: test frames
(VindLU #2: 4 vs 12), split or annotation version (ALPRO #8, UMT #12, #28, VIOLET #7).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

CARD_KEYS = {"split", "test_frames", "frame_sampling", "captions_per_video", "metric", "splits", "zero_shot_splits",
             "reported"}


@dataclass(frozen=True)
class SplitPin:
    items: int | None = None  # annotation rows as the preprocessing adapter reads them
    sha256: str | None = None  # of the annotation file


@dataclass(frozen=True)
class Card:
    split: str  # the split's name as the papers give it, e.g. "1k-A (JSFusion test list)"
    test_frames: int
    frame_sampling: str
    metric: str
    captions_per_video: int | str | None = None  # retrieval: queries per video; "joined" for paragraphs
    splits: dict[str, SplitPin] = field(default_factory=dict)
    zero_shot_splits: tuple[str, ...] = ("test",)  # what a zero-shot evaluation needs
    reported: str | None = None  # which published figures assume this protocol

    @classmethod
    def parse(cls, raw: dict, where: str, split_names: list[str]) -> "Card":
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: card must be a mapping")
        unknown = sorted(set(raw) - CARD_KEYS)
        if unknown:
            raise ValueError(f"{where}: card has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(CARD_KEYS))}")
        missing = [k for k in ("split", "test_frames", "frame_sampling", "metric") if k not in raw]
        if missing:
            raise ValueError(f"{where}: card lacks {', '.join(missing)}")
        if not isinstance(raw["test_frames"], int) or raw["test_frames"] < 1:
            raise ValueError(f"{where}: card.test_frames must be an integer >= 1, not {raw['test_frames']!r}")
        pins = {}
        for name, pin in (raw.get("splits") or {}).items():
            if name not in split_names:
                raise ValueError(f"{where}: card.splits.{name}: the preset has no split {name!r} "
                                 f"({', '.join(split_names)})")
            pin = pin or {}
            extra = sorted(set(pin) - {"items", "sha256"})
            if extra:
                raise ValueError(f"{where}: card.splits.{name}: unknown key(s) {', '.join(extra)} (items, sha256)")
            sha = pin.get("sha256")
            if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                                    or any(c not in "0123456789abcdef" for c in sha)):
                raise ValueError(f"{where}: card.splits.{name}.sha256 must be 64 lowercase hex digits or null")
            items = pin.get("items")
            if items is not None and (not isinstance(items, int) or items < 1):
                raise ValueError(f"{where}: card.splits.{name}.items must be an integer >= 1 or null")
            pins[name] = SplitPin(items, sha)
        zs = tuple(raw.get("zero_shot_splits") or ("test",))
        for name in zs:
            if name not in split_names:
                raise ValueError(f"{where}: card.zero_shot_splits: the preset has no split {name!r}")
        return cls(split=str(raw["split"]), test_frames=raw["test_frames"], frame_sampling=str(raw["frame_sampling"]),
                   metric=str(raw["metric"]), captions_per_video=raw.get("captions_per_video"), splits=pins,
                   zero_shot_splits=zs, reported=raw.get("reported"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class SplitCheck:
    split: str
    items: int
    sha256: str
    mismatches: tuple[str, ...]  # "test.sha256: card 1a2b.. yours 3c4d.."
    unpinned: tuple[str, ...]  # fields the card leaves null


def verify_split(card: Card, split: str, path: Path, items: int) -> SplitCheck:
    """Compare one split's annotation file (``items`` rows as the adapter read them) with the card."""
    pin = card.splits.get(split, SplitPin())
    digest = sha256_of(path)
    bad, open_ = [], []
    if pin.items is None:
        open_.append(f"{split}.items")
    elif pin.items != items:
        bad.append(f"{split}.items: card {pin.items}, yours {items}")
    if pin.sha256 is None:
        open_.append(f"{split}.sha256")
    elif pin.sha256 != digest:
        bad.append(f"{split}.sha256: card {pin.sha256[:12]}.., yours {digest[:12]}.. ({path})")
    return SplitCheck(split, items, digest, tuple(bad), tuple(open_))
