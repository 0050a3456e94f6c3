"""Loader throughput: ``python -m train.data.bench`` -> ``results/bench/loader.json``.

Measured in one run, on the same clips:
- ``naive``: decode every frame of each clip with PyAV, then keep the sampled ones (baseline);
- ``seek``: PyAV seeking to the sampled frames only (what the CPU backend does per clip);
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
import time
from pathlib import Path

from tqdm import tqdm

from pipeline import cli
from pipeline.config import load_params, section
from pipeline.provenance import FIELD, LOADER_BENCH_KEYS, stamp
from train.data.config import LoaderConfig
from train.data.decode import decode_all_frames, decode_sampled_frames
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


def bench_per_clip(samples, cfg: LoaderConfig, seed: int) -> dict:
    """naive (decode all) vs seek (decode sampled), one process, one thread, same clips and indices."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker; also keeps the comparison per core
    plans = [plan_sample(s, cfg, train=True, text="caption", seed=seed, epoch=0) for s in samples]
    result = {}
    for name in ("naive", "seek"):
        start, decoded = time.perf_counter(), 0
        for plan in tqdm(plans, desc=f"bench {name}", leave=False):
            if name == "naive":
                frames = decode_all_frames(plan.video)
                decoded += len(frames)
                frames = frames[plan.indices]
            else:
                frames = decode_sampled_frames(plan.video, plan.indices, keyint=plan.meta["video"].get("keyint"))
                decoded += len(plan.indices)
        seconds = time.perf_counter() - start
        clips = len(plans)
        result[name] = {"clips": clips, "seconds": round(seconds, 4), "clips_per_s": round(clips / seconds, 2),
                        "sampled_frames_per_s": round(clips * len(plans[0].indices) / seconds, 1),
                        "frames_converted": decoded}
    result["seek_speedup_vs_naive"] = round(result["naive"]["seconds"] / result["seek"]["seconds"], 2)
    torch.set_num_threads(threads)
    return result


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
    report["per_clip_decode"] = bench_per_clip(samples, cfg, seed)

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
    print(json.dumps({k: report[k] for k in ("per_clip_decode", "backends")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
