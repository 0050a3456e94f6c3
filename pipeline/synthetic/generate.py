"""Generate the whole benchmark: plan -> render + encode (process pool) -> tar + annotations.

The output folder is built under a temporary name beside it and renamed at the end, so
an interrupted run never leaves a half-written dataset where a finished one is expected.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.encode import encode, ffmpeg_binary
from pipeline.synthetic.plan import ClipPlan, plan_clips, plan_pretrain_clips
from pipeline.synthetic.render import render
from pipeline.synthetic.stills import write_stills
from pipeline.synthetic.writers import write_annotations, write_videos

OUTPUT_MARKER = "meta.json"  # a folder holding it was written by us and may be replaced


def render_and_encode(clip: ClipPlan) -> tuple[str, bytes]:
    """Worker task: one clip's tar member name and file bytes."""
    return clip.member, encode(render(clip.scene), clip.scene.fps, clip.format)


def _encoded(clips: list[ClipPlan], workers: int, progress: bool) -> Iterator[tuple[str, bytes]]:
    bar = tqdm(total=len(clips), desc="synthetic clips", unit="clip", disable=not progress)
    try:
        if workers == 1:
            results = map(render_and_encode, clips)
            for item in results:
                bar.update()
                yield item
        else:
            # map() keeps plan order, which is stem order: the tar streams out sorted.
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for item in pool.map(render_and_encode, clips, chunksize=4):
                    bar.update()
                    yield item
    finally:
        bar.close()


def _check_replaceable(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / OUTPUT_MARKER).exists())):
        raise FileExistsError(
            f"{out} exists and does not look like a synthetic benchmark (no {OUTPUT_MARKER}); "
            "refusing to overwrite it, choose another --out"
        )


def generate(cfg: SyntheticConfig, out: Path | None = None, *, progress: bool = True) -> dict:
    """Write the benchmark to ``out`` (default ``cfg.out_dir``); returns a small summary."""
    out = Path(out if out is not None else cfg.out_dir)
    _check_replaceable(out)
    ffmpeg_binary()  # fail before planning if ffmpeg is missing
    started = time.perf_counter()
    clips, held_out = plan_clips(cfg)
    pretrain = plan_pretrain_clips(cfg, held_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run of ours
    tmp.mkdir()
    try:
        # "videos/clip_*" sorts before "videos/pretrain_*": the tar stays in name order.
        write_videos(tmp / "videos.tar", _encoded([*clips, *pretrain], cfg.worker_count, progress))
        write_annotations(tmp, clips, held_out, cfg, pretrain)
        stills = write_stills(tmp, clips, cfg.seed)  # the benchmark's train clips only
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "out": str(out),
        "clips": len(clips),
        "splits": {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")},
        "pretrain_clips": len(pretrain),
        "held_out_clips": sum(c.held_out for c in clips),
        "pairs": len({c.pair_id for c in clips if c.pair_id}),
        "stills": stills,
        "bytes": size,
        "seconds": round(time.perf_counter() - started, 2),
        "workers": cfg.worker_count,
    }
