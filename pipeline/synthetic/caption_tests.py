"""Caption test sets of the built-in benchmark, written in the real releases' formats so the real
readers (preprocess/formats.py) read them:

- **MSRVTT-MC style** (``annotations/msrvtt_mc/msrvtt_mc_test.json``, Singularity's JSON): each
  test clip with 5 candidate captions, one its own canonical caption. The 4 distractors are other
  clips' canonical captions (any split), the hardest first: most words in common (the temporal-order
  partner names the same events in the other order), then most words in the same place (the same
  scene with another colour or shape). A caption that could also be true of the clip (equal to one
  of its captions, or one inside the other) is never a distractor.
- **LSMDC-FiB style** (``annotations/lsmdc/LSMDC16_FIB_test.csv``, LSMDC16's tab-separated
  layout): each test clip's canonical caption with one colour or shape word blanked as ``_____``
  (an "an" before it written "a", so the article does not give the word away); the answer is the word.

Both are test sets only (zero-shot protocols); every choice is seeded by (seed, purpose, clip).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.synthetic.scene import COLOURS, SHAPES

MC_OPTIONS = 5
# LSMDC16's blank; preprocess/formats.py reads the same (a test holds them equal: importing it
# here would make the generate stage depend on a file dvc.yaml does not list for it)
FIB_BLANK = "_____"
BLANKABLE = set(COLOURS) | set(SHAPES)  # words whose answer the video shows
_MC, _FIB = 11, 12  # purposes mixed into the seeds (plan.py uses 1..4)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())  # "grows," and "grows" are one word


def _hardness(candidate: str, own: str) -> tuple[int, int]:
    """(words in common, words in the same place): larger is a harder distractor."""
    a, b = _words(candidate), _words(own)
    common = sum((Counter(a) & Counter(b)).values())
    return common, sum(x == y for x, y in zip(a, b))


def _could_be_true(candidate: str, captions: list[str]) -> bool:
    return any(candidate == c or candidate in c or c in candidate for c in captions)


def caption_choices(clips: list[dict], seed: int, others: list[dict] | None = None) -> list[dict]:
    """Singularity's MSRVTT-MC entries ``{"video", "caption": [5], "answer"}`` for ``clips``
    (meta.json records), in clip order; distractors come from ``others`` (default: ``clips``).
    A tiny benchmark with fewer than 5 distinct captions gets fewer candidates."""
    canonical = sorted({c["captions"][0] for c in (others if others is not None else clips)})
    out = []
    for i, clip in enumerate(clips):
        own = clip["captions"][0]
        pool = sorted((t for t in canonical if not _could_be_true(t, clip["captions"])),
                      key=lambda t: (tuple(-x for x in _hardness(t, own)), t))
        if not pool:  # a benchmark of a few clips (--num-clips 3): nothing to choose between
            continue
        rng = np.random.default_rng([seed, _MC, i])
        options = pool[:MC_OPTIONS - 1]  # fewer only in a benchmark with under 5 distinct captions
        answer = int(rng.integers(len(options) + 1))
        options.insert(answer, own)
        out.append({"video": Path(clip["file"]).name, "caption": options, "answer": answer})
    return out


def _timestamp(seconds: float) -> str:
    """LSMDC's "hh.mm.ss.mmm"."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}.{ms // 60_000 % 60:02d}.{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def fill_in_the_blank(clips: list[dict], seed: int) -> list[list[str]]:
    """LSMDC16 FiB lines (clip id, 4 time stamps, sentence with one blank, answer) for the clips
    whose canonical caption has a colour or shape word."""
    rows = []
    for i, clip in enumerate(clips):
        words = clip["captions"][0].split()
        bare = [w.rstrip(",.") for w in words]  # "star," blanks as "_____,"
        slots = [k for k, w in enumerate(bare) if w in BLANKABLE]
        if not slots:
            continue
        k = slots[int(np.random.default_rng([seed, _FIB, i]).integers(len(slots)))]
        # "an _____ star" would give away a vowel: the article before the blank is always "a"
        shown = [w.replace(bare[k], FIB_BLANK) if j == k else ("a" if j == k - 1 and w == "an" else w)
                 for j, w in enumerate(words)]
        start, end = _timestamp(0.0), _timestamp(clip["duration"])
        rows.append([clip["stem"], start, end, start, end, " ".join(shown), bare[k]])
    return rows


def write_caption_tests(root: Path, clips: list[dict], seed: int) -> None:
    """Both test sets under ``root/annotations`` from the test clips of ``clips`` (meta.json records)."""
    test = [c for c in clips if c["split"] == "test"]
    mc = root / "annotations" / "msrvtt_mc" / "msrvtt_mc_test.json"
    mc.parent.mkdir(parents=True, exist_ok=True)
    mc.write_text(json.dumps(caption_choices(test, seed, clips), indent=1, ensure_ascii=True) + "\n")
    fib = root / "annotations" / "lsmdc" / "LSMDC16_FIB_test.csv"
    fib.parent.mkdir(parents=True, exist_ok=True)
    fib.write_text("".join("\t".join(r) + "\n" for r in fill_in_the_blank(test, seed)))
