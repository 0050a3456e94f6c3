"""python -m preprocess: annotations + videos -> normalised WebDataset shards + stats.parquet.

    python -m preprocess --annotations FILE [FILE ...] --videos DIR_OR_TAR [...] --out DIR
                         [--format F] [--split S] [--workers N] [--shard-size N]
                         [--manifest PATH] [--stage all|ingest|shard] [--params params.yaml]
                         [--print-config] [preprocess.key=value ...]

``--stage ingest`` only writes the manifest (DVC stage ``ingest``); ``--stage shard`` shards an
existing manifest (DVC stage ``shard``); ``all`` (default) does both. Settings come from the
``preprocess:`` section of params.yaml; the flags override it. Rerunning the same command
finishes an interrupted run.

Errors for people: bad settings exit 2; an error of the machine (a full disk, a removed
folder, a killed ffmpeg) or a second job writing the same ``--out`` exits 1. Each prints one
``error: ...`` line. No video is marked failed for the machine's fault: its shard is left
unfinished, and the rerun redoes it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

from pipeline import cli
from pipeline.config import ConfigError, load_params, section
from preprocess.api import build_manifest, finalize, plan_shards, process_shards
from preprocess.config import PreprocessConfig
from preprocess.faults import StopRun, describe
from preprocess.formats import FORMATS, AnnotationError
from preprocess.lock import hold_folder
from preprocess.sources import VideosError


def load_config(params: str | None, overrides: list[str]) -> PreprocessConfig:
    """The preprocess section of ``params`` (default: the repository's params.yaml), with
    ``key=value`` overrides merged last."""
    return section(load_params(params, overrides=overrides), PreprocessConfig, "preprocess")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m preprocess", description=__doc__.split("\n")[0])
    p.add_argument("--annotations", nargs="+", help="annotation file(s)")
    p.add_argument("--videos", nargs="+", help="folder of videos or images, or a .tar of them (members found "
                   "by path or stem); several are searched in order; default for img2dataset .tar / .parquet "
                   "annotations: those files")
    p.add_argument("--out", help="shard folder (shard-*.tar, stats.parquet); not needed for --stage ingest")
    p.add_argument("--format", choices=FORMATS, help="annotation format (default: detect)")
    p.add_argument("--split", help="keep only this split (files that carry splits, e.g. MSR_VTT.json)")
    p.add_argument("--workers", type=int, help="parallel transcodes (default: preprocess.workers, all cores)")
    p.add_argument("--shard-size", type=int, help="samples per shard (default: preprocess.shard_samples)")
    p.add_argument("--manifest", help="manifest path (default: OUT/manifest.parquet)")
    p.add_argument("--stage", choices=("all", "ingest", "shard"), default="all")
    p.add_argument("--no-progress", action="store_true")
    cli.add_config_arguments(p)  # e.g. preprocess.target_fps=8
    return cli.parse(p, argv)


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning for people (files left out of --videos ...): one ``warning:`` line, no source line."""
    return f"warning: {message}\n"


def check_binaries(cfg, manifest: Path) -> None:
    """ffmpeg (and ffprobe when it probes) must run here before shards are planned: found
    mid-run, a missing one would stop the first transcode and leave a plan behind. A collection
    of still images only (read with PIL) needs neither."""
    import pyarrow.parquet as pq

    from preprocess.images import is_image_path

    sources = pq.read_table(str(manifest), columns=["source"]).column("source").to_pylist()
    if all(s is None or is_image_path(s) for s in sources):
        return
    needed = [("ffmpeg", cfg.ffmpeg)] + ([("ffprobe", cfg.ffprobe)] if cfg.probe == "ffprobe" else [])
    for key, binary in needed:
        if shutil.which(binary) is None:
            raise ConfigError(f"preprocess.{key}: {binary!r} is not an executable on this machine "
                              "(install ffmpeg, or point the key at the binary)")


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _warning_line
    args = parse_args(argv)
    try:
        # the flags are overrides of their keys, so a bad value is named as the key it sets
        flags = [f"preprocess.workers={args.workers}"] if args.workers is not None else []
        flags += [f"preprocess.shard_samples={args.shard_size}"] if args.shard_size is not None else []
        overrides = [*args.overrides, *flags]
        cfg = load_config(args.params, overrides)
        if args.print_config:
            return cli.print_config(load_params(args.params, overrides=overrides))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is None and (args.stage != "ingest" or not args.manifest):
        print("error: --out is needed (or --stage ingest with --manifest)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
    manifest = Path(args.manifest) if args.manifest else out / "manifest.parquet"
    if args.videos is None and args.annotations \
            and all(Path(a).suffix in (".tar", ".parquet") for a in args.annotations):
        args.videos = args.annotations  # img2dataset tars / Parquet files hold their own images
    if args.stage in ("all", "ingest") and (not args.annotations or not args.videos):
        print("error: --annotations and --videos are needed to build the manifest", file=sys.stderr)
        return 2
    folders = [a for a in args.annotations or [] if Path(a).is_dir()]
    if args.stage in ("all", "ingest") and folders:  # a usage error, not a fault of the machine
        print(f"error: --annotations {folders[0]}: a folder; name the annotation file(s) in it", file=sys.stderr)
        return 2
    try:
        # One job writes an output folder at a time (preprocess.lock); a second is refused.
        with hold_folder(out) if out is not None else contextlib.nullcontext():
            return run_stages(args, cfg, out, manifest)
    except ConfigError as err:  # a binary the collection needs is missing
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (AnnotationError, VideosError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StopRun as err:  # a full disk, a killed ffmpeg, a second job: the rerun finishes the work
        print(f"error: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:  # a wrong --videos / --manifest path
        print(f"error: {describe(err) if err.strerror else err}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as err:
        print(f"error: {describe(err)}; rerun the same command once this is fixed", file=sys.stderr)
        return 1


def run_stages(args: argparse.Namespace, cfg: PreprocessConfig, out: Path | None, manifest: Path) -> int:
    ids = None
    if args.stage in ("all", "ingest"):
        videos = args.videos[0] if len(args.videos) == 1 else args.videos
        if args.stage == "ingest":
            build_manifest(args.annotations, videos, manifest, args.format, args.split, cfg)
        else:
            # The new manifest replaces the old one only once the output folder accepts its plan:
            # a folder holding another plan's shards refuses it, and its manifest must still be
            # the one those shards were made from.
            new = manifest.with_name(f".{manifest.stem}.{os.getpid()}.new.parquet")
            try:
                build_manifest(args.annotations, videos, new, args.format, args.split, cfg)
                check_binaries(cfg, new)
                ids = plan_shards(out, cfg, manifest=new)
                os.replace(new, manifest)
            finally:
                new.unlink(missing_ok=True)
        print(f"manifest: {manifest}", file=sys.stderr)
    if args.stage in ("all", "shard"):
        if ids is None:
            check_binaries(cfg, manifest)
        ids = plan_shards(out, cfg, manifest=manifest) if ids is None else ids
        process_shards(out, ids, cfg, cfg.num_workers, manifest=manifest, progress=not args.no_progress)
        summary = finalize(out, manifest=manifest)
        print(json.dumps({k: v for k, v in summary.items() if k != "shards"}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
