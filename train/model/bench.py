"""Step-time benchmark: SMAUG (masking + sparsification) against the dense baseline.

``python -m train.model.bench [--batch 32] [--steps 5] [key.path=value ...]`` times forward +
backward + AdamW step of the ``model:`` config (params.yaml defaults, or the built-in defaults
when params.yaml has no model section) and of the same model with ``masking.video_ratio: 0``,
``sparsify.enabled: false``, ``objectives.mvm: 0`` (the ``dense`` recipe), measured in the same
run on the same synthetic batch, and writes ``results/bench/model_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.config import REPO_ROOT, deep_merge, load_params, parse_override, section

from .config import ModelConfig
from .smaug import SMAUG

DENSE = {"masking": {"video_ratio": 0.0}, "sparsify": {"enabled": False}, "objectives": {"mvm": 0.0}}


def synthetic_batch(cfg: ModelConfig, batch: int, text_len: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    v = cfg.video
    ids = torch.randint(1000, 20000, (batch, cfg.text.max_len), generator=g)
    am = torch.zeros_like(ids)
    am[:, :text_len] = 1
    ids[:, 0], ids[:, text_len - 1] = 101, 102
    ids[:, text_len:] = 0
    return {
        "video": torch.randn(batch, v.num_frames, 3, v.image_size, v.image_size, generator=g),
        "input_ids": ids, "attention_mask": am, "key": [f"clip_{i:05d}" for i in range(batch)],
    }


def step_flops(model: SMAUG, batch: dict) -> int:
    """FLOPs of one forward + backward (torch's FlopCounterMode: matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def time_steps(cfg: ModelConfig, batch: dict, steps: int, warmup: int, label: str) -> dict:
    torch.manual_seed(0)
    model = SMAUG(cfg).train()
    flops = step_flops(model, batch)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    wall, cpu = [], []
    for i in tqdm(range(warmup + steps), desc=label):
        t0, c0 = time.perf_counter(), time.process_time()
        out = model(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if i >= warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    wall.sort()
    cpu.sort()
    return {"median_wall_s": wall[len(wall) // 2], "min_wall_s": wall[0],
            "median_cpu_s": cpu[len(cpu) // 2], "gflops_per_step": flops / 1e9, "stats": out.stats}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--text-len", type=int, default=24,
                    help="tokens of the longest caption in the batch (synthetic captions: ~24)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0: torch default). 1 by default: on a shared machine "
                    "two OpenMP threads spin-wait on each other and wall times mean little")
    ap.add_argument("--out", default=str(REPO_ROOT / "results/bench/model_step.json"))
    ap.add_argument("overrides", nargs="*", help="model.key=value")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params() if (REPO_ROOT / "params.yaml").exists() else {}
    for text in args.overrides:
        params = deep_merge(params, parse_override(text))
    smaug_raw = params.get("model") or {}
    smaug_cfg = section({"model": smaug_raw}, ModelConfig, "model")
    dense_cfg = section({"model": deep_merge(smaug_raw, DENSE)}, ModelConfig, "model")
    batch = synthetic_batch(smaug_cfg, args.batch, args.text_len)
    smaug = time_steps(smaug_cfg, batch, args.steps, args.warmup, "smaug")
    dense = time_steps(dense_cfg, batch, args.steps, args.warmup, "dense")
    result = {
        "benchmark": "train step (forward + backward + AdamW), synthetic batch",
        "batch": args.batch, "steps": args.steps, "text_len": args.text_len,
        "smaug": smaug, "dense (baseline)": dense,
        "speedup_wall": dense["median_wall_s"] / smaug["median_wall_s"],
        "speedup_cpu": dense["median_cpu_s"] / smaug["median_cpu_s"],
        "flops_ratio": dense["gflops_per_step"] / smaug["gflops_per_step"],
        "load_average_1min": os.getloadavg()[0],
        "machine": f"{platform.processor() or platform.machine()}, torch threads "
                   f"{torch.get_num_threads()}, torch {torch.__version__}",
        "overrides": args.overrides,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"smaug {smaug['median_wall_s']:.3f}s wall {smaug['median_cpu_s']:.3f}s cpu | "
          f"dense {dense['median_wall_s']:.3f}s wall {dense['median_cpu_s']:.3f}s cpu | "
          f"speedup wall {result['speedup_wall']:.2f}x cpu {result['speedup_cpu']:.2f}x "
          f"flops {result['flops_ratio']:.2f}x")
    return result


if __name__ == "__main__":
    main()
