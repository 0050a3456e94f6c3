"""Presets for the real benchmarks: which files go where, and the params to run them.

    python -m eval.benchmarks list
    python -m eval.benchmarks check NAME|FILE [--root DIR] [--zero-shot]
                                                  # the files there, matching the card? how to shard them
    python -m eval.benchmarks overrides NAME               # key=value lines for finetune / evaluate

A preset (``eval/presets/<name>.yaml``) names the annotation files of each split with their
format, the video folder, the shard folders preprocessing should write, and the params
overrides that point fine-tuning and evaluation at those shards, e.g.::

    python -m eval.benchmarks check msrvtt_ret            # prints the preprocess commands
    python -m train.finetune --task retrieval --preset msrvtt_ret
    python -m eval.evaluate --preset msrvtt_ret

Annotation files are parsed by the preprocessing adapters (:mod:`preprocess.formats`), the
same code that shards them, so a preset that parses here also shards there. A missing file
is reported with the path it is expected at and the format it must have.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path


from eval.cards import Card, SplitCheck, verify_split
from pipeline import cli
from pipeline.config import REPO_ROOT, ConfigError, load_params, load_yaml

PRESETS_DIR = Path(__file__).resolve().parent / "presets"

# What each annotation format looks like (the adapters in preprocess.formats read them).
FORMAT_HELP = {
    "webvid": "WebVid CSV with columns videoid, contentUrl, duration, page_dir, name (the caption)",
    "msrvtt": 'MSR_VTT.json: {"videos": [{"video_id", "split"}], "annotations": [{"image_id", "caption"}]}',
    "msrvtt_1ka": "the 1k-A test list CSV (MSRVTT_JSFUSION_test.csv): key, vid_key, video_id, sentence",
    "clipbert": 'ClipBERT/ALPRO JSONL, one {"caption", "clip_name"} per line',
    "singularity": 'Singularity/VindLU JSON list [{"video" | "image": path, "caption": str | [str]}]',
    "paragraph": 'paragraph retrieval: DiDeMo [{"video", "description"}], ActivityNet '
                 '{"v_id": {"sentences": [...]}} or a Singularity list; captions joined per video',
    "msrvtt_qa": 'MSRVTT-QA JSON list [{"question", "answer", "video_id", "answer_type"}]',
    "msvd_qa": 'MSVD-QA JSON list [{"question", "answer", "video_id", "answer_type"}] (video_id n -> vid<n>)',
    "tgif_qa": 'TGIF-QA: Action/Transition {"gif_name", "question", "options": [5], "answer": int}, '
               'FrameQA {"gif_name", "question", "answer", "answer_type"} (JSON, JSONL or TSV)',
    "msrvtt_mc": 'MSRVTT-MC: Singularity JSON [{"video", "caption": [5 captions], "answer": int}] or ClipBERT '
                 'JSONL {"clip_name", "options": [5], "answer": int, "qid"}',
    "lsmdc_mc": "LSMDC16 multiple choice, tab-separated, no header: clip id, 4 time stamps, 5 sentences and the "
                "1-based answer (public test) or the right sentence then 4 distractors (train/valid)",
    "lsmdc_fib": "LSMDC16 fill-in-the-blank, tab-separated, no header: clip id, 4 time stamps, the sentence "
                 "with _____ for the blank, the answer word",
    "lsmdc": "LSMDC16 retrieval, tab-separated, no header: clip id, 4 time stamps, sentence",
    "anet_qa": 'ActivityNet-QA <split>_q.json [{"question_id", "video_name", "question"}] with <split>_a.json '
               '[{"question_id", "answer", "type"}] beside it',
    "ssv2_template": 'Something-Something v2 JSON [{"id", "label", "template", "placeholders"}]; caption = '
                     'the template, [something] unbracketed',
    "ssv2_label": 'Something-Something v2 JSON [{"id", "label", "template", "placeholders"}]; caption = the label',
}


class MissingData(FileNotFoundError):
    """A preset's input files are not where it expects them; the message lists each."""


@dataclass(frozen=True)
class Split:
    name: str
    annotations: str
    format: str
    shards: str
    videos: str | None = None  # overrides the preset's video folder (CC3M images)


@dataclass(frozen=True)
class Preset:
    name: str
    task: str
    dataset: str
    videos: str
    splits: tuple[Split, ...]
    params: dict
    card: Card | None = None  # the protocol (eval/cards.py); None: no published protocol to match

    def overrides(self) -> list[str]:
        """``key.path=value`` strings for train.finetune / eval.evaluate."""
        return [f"{key}={value if isinstance(value, str) else json.dumps(value)}"
                for key, value in self.params.items()]


def available() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name (eval/presets/<name>.yaml) or by the path of a preset file anywhere."""
    path = Path(name_or_path)
    if not path.is_file() and not path.suffix and "/" not in str(name_or_path):
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise MissingData(f"preset {name_or_path!r} not found: neither a file nor a known preset "
                          f"(known presets: {', '.join(available())})")
    raw = load_yaml(path)  # not YAML, or not a mapping: a ConfigError naming the file
    try:
        splits = tuple(Split(name=n, annotations=s["annotations"], format=s["format"], shards=s["shards"],
                             videos=s.get("videos")) for n, s in raw["splits"].items())
        preset = Preset(name=raw["name"], task=raw["task"], dataset=raw["dataset"], videos=raw["videos"],
                        splits=splits, params=dict(raw.get("params") or {}))
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: malformed preset ({err!r}); needs name, task, dataset, videos, "
                         f"splits.<split>.annotations/format/shards") from None
    for s in preset.splits:
        if s.format not in FORMAT_HELP:
            raise ValueError(f"{path}: split {s.name}: unknown format {s.format!r}")
    if raw.get("card") is not None:
        card = Card.parse(raw["card"], str(path), [s.name for s in preset.splits])
        # a preset states its test frame count, and the card pins it: no silent change
        stated = preset.params.get("eval.num_frames")
        if stated != card.test_frames:
            raise ValueError(f"{path}: params eval.num_frames is {stated!r} but card.test_frames is "
                             f"{card.test_frames}; the preset must state the card's test frame count")
        preset = replace(preset, card=card)
    return preset


def _resolve(path: str, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def needed_splits(preset: Preset, zero_shot: bool = False) -> list[Split]:
    """The splits a run needs: all of them, or for a zero-shot test the card's zero_shot_splits
    (default: test) -- a zero-shot test does not demand training annotations."""
    if not zero_shot:
        return list(preset.splits)
    names = preset.card.zero_shot_splits if preset.card else ("test",)
    chosen = [s for s in preset.splits if s.name in names]
    if not chosen:
        raise ValueError(f"preset {preset.name} has no split {' / '.join(names)} for a zero-shot test")
    return chosen


def check_inputs(preset: Preset, root: str | Path = REPO_ROOT, splits: list[Split] | None = None) -> None:
    """Raise :class:`MissingData` naming every missing annotation file or video folder (of
    ``splits``, default all)."""
    root = Path(root)
    problems = []
    for s in splits if splits is not None else preset.splits:
        ann = _resolve(s.annotations, root)
        if not ann.is_file():
            problems.append(f"{preset.dataset} {s.name} annotations: expected {ann} "
                            f"(format {s.format}: {FORMAT_HELP[s.format]})")
        videos = _resolve(s.videos or preset.videos, root)
        if not videos.exists():
            problems.append(f"{preset.dataset} {s.name} videos: expected a folder (or .tar) of videos at {videos}")
    if problems:
        raise MissingData(f"preset {preset.name}: input data missing; fill in the paths in "
                          f"eval/presets/{preset.name}.yaml or put the files there:\n  - " + "\n  - ".join(problems))


def parse_split(preset: Preset, split: str, root: str | Path = REPO_ROOT) -> list[dict]:
    """The split's annotation rows, read by the preprocessing adapter of its format."""
    from preprocess.formats import read_rows

    s = next((x for x in preset.splits if x.name == split), None)
    if s is None:
        raise ValueError(f"preset {preset.name} has no split {split!r} ({', '.join(x.name for x in preset.splits)})")
    path = _resolve(s.annotations, Path(root))
    if not path.is_file():
        raise MissingData(f"{preset.dataset} {split} annotations: expected {path} "
                          f"(format {s.format}: {FORMAT_HELP[s.format]})")
    _, rows = read_rows(path, s.format)
    return list(rows)


def verify_card(preset: Preset, root: str | Path = REPO_ROOT, zero_shot: bool = False) -> list[SplitCheck]:
    """Each needed split's annotation file against the card: counts and sha256 (eval/cards.py)."""
    if preset.card is None:
        return []
    return [verify_split(preset.card, s.name, _resolve(s.annotations, Path(root)),
                         len(parse_split(preset, s.name, root))) for s in needed_splits(preset, zero_shot)]


def protocol_record(name: str | None, root: str | Path = REPO_ROOT) -> dict | None:
    """What eval.evaluate records of a preset run: the card check of the annotation files present
    (the zero-shot splits must be), for the tables to decide whether published figures go beside."""
    if not name:
        return None
    preset = load_preset(name)
    section_name = preset.task if preset.task in ("qa", "mc", "mc_caption", "fib") else "retrieval"
    dataset = preset.params.get(f"eval.{section_name}.dataset", preset.dataset)  # the tables' column
    record = {"preset": preset.name, "dataset": dataset, "card": preset.card is not None}
    if preset.card is None:
        return {**record, "matched": False, "mismatches": ["no protocol card"], "unpinned": []}
    needed = {s.name for s in needed_splits(preset, zero_shot=True)}
    present = [s for s in preset.splits if s.name in needed or _resolve(s.annotations, Path(root)).is_file()]
    checks = [verify_split(preset.card, s.name, _resolve(s.annotations, Path(root)),
                           len(parse_split(preset, s.name, root))) for s in present]
    mismatches = [m.split(":")[0] for c in checks for m in c.mismatches]
    return {**record, "matched": not mismatches, "mismatches": mismatches,
            "unpinned": [u for c in checks for u in c.unpinned], "test_frames": preset.card.test_frames,
            "sha256": {c.split: c.sha256 for c in checks}}


def missing_shards(preset: Preset, root: str | Path = REPO_ROOT, splits: list[Split] | None = None) -> list[Split]:
    return [s for s in (splits if splits is not None else preset.splits)
            if not any(_resolve(s.shards, Path(root)).glob("*.tar"))]


def check_shards(preset: Preset, root: str | Path = REPO_ROOT) -> None:
    """Raise :class:`MissingData` (with the commands that make them) if shards are missing."""
    missing = [s for s in preset.splits if not any(_resolve(s.shards, Path(root)).glob("*.tar"))]
    if missing:
        raise MissingData(
            f"preset {preset.name}: no shards at " + ", ".join(s.shards for s in missing)
            + "; make them with:\n  " + "\n  ".join(
                c for s, c in zip(preset.splits, shard_commands(preset)) if s in missing))


def preset_overrides(name: str | None, root: str | Path = REPO_ROOT, *, need_shards: bool = True) -> list[str]:
    """The overrides of preset ``name`` after checking its shards exist ([] for no preset).

    A preset that is not there, is malformed or lacks its shards is a :class:`ConfigError` naming
    ``--preset`` (one ``error:`` line from the programs that take it); ``need_shards=False`` for
    ``--print-config``, which shows the settings before the shards are made.
    """
    if not name:
        return []
    try:
        preset = load_preset(name)
        if need_shards:
            check_shards(preset, root)
    except (MissingData, ValueError) as err:  # ConfigError is a ValueError too
        raise ConfigError(f"--preset {name}: {err}") from None
    return preset.overrides()


def shard_commands(preset: Preset) -> list[str]:
    return [f"python -m preprocess --annotations {s.annotations} --videos {s.videos or preset.videos} "
            f"--format {s.format} --out {s.shards}" for s in preset.splits]


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.benchmarks", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    c = sub.add_parser("check", help="are the preset's files there? how to shard them")
    c.add_argument("name", metavar="NAME|FILE")
    c.add_argument("--root", default=str(REPO_ROOT), help="relative paths start here")
    c.add_argument("--zero-shot", action="store_true",
                   help="check only what a zero-shot test needs (the card's zero_shot_splits, default test)")
    o = sub.add_parser("overrides", help="the key=value settings the preset applies")
    o.add_argument("name", metavar="NAME|FILE")
    for q in (c, o):
        cli.add_config_arguments(q)
    args = p.parse_args(argv)
    try:
        if getattr(args, "print_config", False):
            preset = load_preset(args.name)
            return cli.print_config(load_params(args.params, overrides=preset.overrides() + args.overrides))
        if args.cmd == "list":
            for name in available():
                pr = load_preset(name)
                print(f"{name:22s} {pr.task:10s} {pr.dataset}")
        elif args.cmd == "overrides":
            preset = load_preset(args.name)
            load_params(args.params, overrides=preset.overrides() + args.overrides)  # names checked
            print("\n".join(preset.overrides()))
        else:
            preset = load_preset(args.name)
            load_params(args.params, overrides=preset.overrides() + args.overrides)
            splits = needed_splits(preset, args.zero_shot)
            check_inputs(preset, args.root, splits)
            for s in splits:
                rows = parse_split(preset, s.name, args.root)
                bad = sum(r["row_error"] is not None for r in rows)
                print(f"{s.name}: {len(rows)} annotation rows ({bad} unusable) in {s.annotations}")
            checks = verify_card(preset, args.root, args.zero_shot)
            mismatches = [m for c in checks for m in c.mismatches]
            if preset.card is None:
                print("no protocol card: nothing to match against published figures")
            else:
                c = preset.card
                print(f"card: split {c.split}; {c.test_frames} test frames ({c.frame_sampling}); "
                      f"captions per video {c.captions_per_video}; metric: {c.metric}")
                for chk in checks:
                    print(f"{chk.split}: sha256 {chk.sha256}" + (
                        f" (not pinned: {', '.join(chk.unpinned)}; the card does not know the release's value, "
                        f"so this copy is unverified there: pin yours in card.splits.{chk.split} from a copy you "
                        f"trust)" if chk.unpinned else ""))
                for m in mismatches:
                    print(f"MISMATCH {m}")
                print("card: " + ("MISMATCH in " + ", ".join(m.split(":")[0] for m in mismatches) if mismatches
                                  else "matched (every pinned field)"))
            todo = missing_shards(preset, args.root, splits)
            if todo:
                print("shard with:\n  " + "\n  ".join(
                    cmd for s, cmd in zip(preset.splits, shard_commands(preset)) if s in todo))
            else:
                print("shards: all present (" + ", ".join(s.shards for s in splits) + ")")
            print("then run with: " + " ".join(f"'{x}'" for x in preset.overrides()))
            if mismatches:
                return 1
    except (MissingData, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        return cli.fail(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
