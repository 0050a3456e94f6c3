"""Loader throughput: ``python -m train.data.bench`` -> ``results/bench/loader.json``.

Measured in one run, on the same clips:
- ``naive``: decode every frame of each clip with PyAV, then keep the sampled ones (baseline);
- ``seek``: decoding only the sampled frames, whole (the same output the peers give), and
  ``seek_crop``: converting only the clip's crop box (what the CPU backend does per clip);
- with ``--peers``: torchcodec (exact and approximate seek modes) and decord, when installed,
  on the same clips and indices; with ``--long-clips N``: the same comparison on N generated
  30 s clips encoded like preprocess's windows;
- ``cpu``: the whole CPU loader (workers, augmentation, tokenisation, batching);
- ``dali``: the DALI loader, when a GPU and DALI are present (else the reason it is not).

The loader alone: how long training waits for data is measured by the training runs themselves
(``data_wait_frac`` in ``results/metrics/pretrain-<run>.json``), and the trainer's speed, SMAUG
against dense, by the one training benchmark, ``python -m train.bench``.
"""

from __future__ import annotations

import argparse
import sys
import dataclasses
import json
import logging
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline import cli
from pipeline.config import load_params, section
from pipeline.provenance import FIELD, LOADER_BENCH_KEYS, stamp
from train.data.config import LoaderConfig
from train.data import peers as peers_mod
from train.data.loader import VideoTextLoader, choose_backend
from train.data.samples import plan_sample
from train.data.shards import RawSample, expand_shards, iter_samples

log = logging.getLogger("train.data.bench")


def first_samples(urls: list[str], n: int) -> list[RawSample]:
    out = []
    for item in iter_samples(urls, rank=0, world_size=1, worker=0, num_workers=1, seed=0, epoch=0,
                             train=False, resampled=False, shuffle_buffer=0):
        if isinstance(item, RawSample):
            out.append(item)
            if len(out) == n:
                break
    if not out:
        raise RuntimeError("no readable samples in the shards")
    return out


def bench_per_clip(samples, cfg: LoaderConfig, seed: int, *, peers: bool, rounds: int) -> dict:
    """Every decoder on the same clips and sampled indices, one process, one thread, rounds interleaved.

    ``clips_per_s`` is the median over ``rounds`` (the cores may be shared: interleaving gives
    every decoder the same conditions, and the ratios come from the same run). ``seek`` returns
    the same whole frames as the peers; ``seek_crop`` is what the loader does (converts only the
    clip's crop box).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker; also keeps the comparison per core
    plans = [plan_sample(s, cfg, train=True, text="caption", seed=seed, epoch=0) for s in samples]
    decoders = {"naive": peers_mod.naive, "seek": peers_mod.ours_full, "seek_crop": peers_mod.ours_crop}
    missing: dict[str, str] = {}
    if peers:
        found, missing = peers_mod.peer_decoders()
        decoders.update(found)
    seconds: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in tqdm(range(rounds), desc="bench per clip (rounds)", leave=False):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for plan in plans:
                decode(plan)
            seconds[name].append(time.perf_counter() - start)
    frames = len(plans[0].indices)
    result: dict = {"clips": len(plans), "frames_per_clip": frames, "rounds": rounds, "decoders": {}}
    for name, times in seconds.items():
        median = statistics.median(times)
        result["decoders"][name] = {"seconds_median": round(median, 4), "clips_per_s": round(len(plans) / median, 2),
                                    "sampled_frames_per_s": round(len(plans) * frames / median, 1),
                                    "clips_per_s_rounds": [round(len(plans) / t, 2) for t in times]}
    result["frames_converted"] = {"naive": sum(int(p.meta["video"]["num_frames"]) for p in plans),
                                  "seek": len(plans) * frames}
    base = result["decoders"]["naive"]["clips_per_s"]
    for res in result["decoders"].values():
        res["speedup_vs_naive"] = round(res["clips_per_s"] / base, 2)
    result["seek_speedup_vs_naive"] = result["decoders"]["seek"]["speedup_vs_naive"]
    ours = result["decoders"]["seek"]["clips_per_s"]
    result["seek_vs_peers"] = {name: round(ours / result["decoders"][name]["clips_per_s"], 2)
                               for name in decoders if name not in ("naive", "seek", "seek_crop")}
    result["pixels_vs_seek"] = _pixel_differences(plans[0], decoders)
    if peers:
        result["peers_unavailable"] = missing
    torch.set_num_threads(threads)
    return result


def _pixel_differences(plan, decoders: dict) -> dict:
    """Mean / max absolute difference of each decoder's frames to ours on one clip (grey levels).

    The peers convert colour with libswscale (chroma samples repeated), ours as the GPU path
    does (bilinear chroma), so they differ on colour edges while showing the same frames.
    """
    ours = peers_mod.as_thwc(decoders["seek"](plan)).astype(np.int16)
    out = {}
    for name, decode in decoders.items():
        if name in ("seek", "seek_crop"):
            continue
        other = peers_mod.as_thwc(np.asarray(decode(plan))).astype(np.int16)
        if other.shape != ours.shape:
            out[name] = {"shape": list(other.shape)}
            continue
        diff = np.abs(other - ours)
        out[name] = {"mean": round(float(diff.mean()), 3), "max": int(diff.max())}
    return out


def long_clip_samples(n: int, seconds: float, folder: Path) -> list[RawSample]:
    """``n`` synthetic clips of ``seconds`` encoded like ``preprocess`` normalises a long video's window.

    H.264 (libx264 veryfast, crf 23), 10 fps, 228x128, keyframe every 10 frames, no B-frames;
    each clip a different lavfi pattern so decoders cannot lean on repeated content.
    """
    fps, keyint, width, height = 10, 10, 228, 128
    samples = []
    for i in range(n):
        path = folder / f"long_{i:03d}.mp4"
        pattern = ("testsrc2", "mandelbrot", "life", "cellauto", "rgbtestsrc", "smptebars")[i % 6]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"{pattern}=size={width}x{height}:rate={fps}", "-t", f"{seconds}",
                        "-vf", "format=yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                        "-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0", "-bf", "0",
                        "-x264-params", "open-gop=0", "-movflags", "+faststart", str(path)], check=True)
        frames = int(round(seconds * fps))
        meta = {"key": path.stem, "captions": ["a long synthetic clip"],
                "video": {"fps": float(fps), "num_frames": frames, "width": width, "height": height,
                          "duration": seconds, "codec": "h264", "pix_fmt": "yuv420p", "keyint": keyint}}
        samples.append(RawSample(path.stem, path.read_bytes(), meta))
    return samples


def endless(cfg: LoaderConfig, batches: int) -> LoaderConfig:
    """Resampled shards, so a small shard set never runs dry during timing."""
    return dataclasses.replace(cfg, resampled=True, epoch_length=batches)


def bench_loader(cfg: LoaderConfig, urls, backend: str, max_batches: int, seed: int, cpu_decoder: str = "seek") -> dict:
    loader = VideoTextLoader(endless(cfg, max_batches + 1), urls, train=True, seed=seed, backend=backend,
                             cpu_decoder=cpu_decoder)
    it = iter(loader)
    next(it)  # start-up (worker spawn, shuffle buffer fill, DALI build) is not throughput
    start, clips = time.perf_counter(), 0
    for batch in tqdm(it, total=max_batches, desc=f"bench {backend}/{cpu_decoder} loader", leave=False):
        clips += len(batch["key"])
    seconds = time.perf_counter() - start
    frames = clips * cfg.frames_per_clip
    return {"batches": loader.stats["batches"] - 1, "clips": clips, "seconds": round(seconds, 3),
            "clips_per_s": round(clips / seconds, 2), "frames_per_s": round(frames / seconds, 1),
            "num_workers": cfg.num_workers, "batch_size": cfg.batch_size}


def run_bench(args: argparse.Namespace, params: dict) -> dict:
    cfg = section(params, LoaderConfig, "loader")
    seed = int(params.get("seed", 0) or 0)
    urls = expand_shards(args.shards)

    report: dict = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                                "cpus": __import__("os").cpu_count()},
                    "shards": args.shards, "num_shards": len(urls),
                    "loader": {"num_frames": cfg.num_frames, "sampling": cfg.sampling, "image_size": cfg.image_size,
                               "batch_size": cfg.batch_size, "num_workers": cfg.num_workers}}
    samples = first_samples(urls, args.clips)
    v = samples[0].meta["video"]
    report["clip_example"] = {k: v.get(k) for k in ("width", "height", "fps", "num_frames", "keyint", "codec")}
    report["per_clip_decode"] = bench_per_clip(samples, cfg, seed, peers=args.peers, rounds=args.rounds)
    if args.long_clips:
        with tempfile.TemporaryDirectory() as tmp:
            long = long_clip_samples(args.long_clips, args.long_seconds, Path(tmp))
            report["per_clip_decode_long"] = bench_per_clip(long, cfg, seed, peers=args.peers, rounds=args.rounds)
            report["per_clip_decode_long"]["clip_example"] = long[0].meta["video"]

    # The same loader decoding every frame of each clip: the naive baseline at loader level.
    report["backends"] = {"cpu_naive_decode_all": bench_loader(cfg, urls, "cpu", args.batches, seed, "all"),
                          "cpu": bench_loader(cfg, urls, "cpu", args.batches, seed)}
    auto, why = choose_backend("auto")
    report["auto_backend"] = {"backend": auto, "reason": why}
    if auto == "dali":
        report["backends"]["dali"] = bench_loader(cfg, urls, "dali", args.batches, seed)
    else:
        report["backends"]["dali"] = {"available": False, "reason": why}
    naive = report["backends"]["cpu_naive_decode_all"]["clips_per_s"]
    for name, res in report["backends"].items():
        if "clips_per_s" in res:
            res["speedup_vs_naive_loader"] = round(res["clips_per_s"] / naive, 2)
    return report


@cli.config_errors_exit
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.data.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="data/shards/pretrain")
    parser.add_argument("--out", default="results/bench/loader.json")
    parser.add_argument("--clips", type=int, default=24, help="clips for the per-clip decode comparison")
    parser.add_argument("--batches", type=int, default=8, help="batches timed per loader backend")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the per-clip comparison (median)")
    parser.add_argument("--peers", action="store_true",
                        help="also time torchcodec and decord on the same clips and indices, when they import")
    parser.add_argument("--long-clips", type=int, default=0,
                        help="also compare decoders on this many generated long clips (0: skip)")
    parser.add_argument("--long-seconds", type=float, default=30.0, help="length of each generated long clip")
    cli.add_config_arguments(parser)
    args = cli.parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(args.params, overrides=args.overrides)
    section(params, LoaderConfig, "loader")
    if args.print_config:
        return cli.print_config(params)
    report = run_bench(args, params)
    report[FIELD] = stamp(params, LOADER_BENCH_KEYS, overrides=args.overrides)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", out)
    print(json.dumps({k: report[k] for k in ("per_clip_decode", "per_clip_decode_long", "backends") if k in report},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
