"""GPU acceptance check: ``python -m train.gpu_check`` (or ``bash scripts/gpu_check.sh``).

On one GPU, in a few minutes, with what a bare GPU box has (torch, transformers, numpy; no
shards, no DVC, no offline text-encoder package), it measures and writes to
``results/bench/gpu.json``:

* the device: name, compute capability, torch / CUDA versions, bf16 support, its dense bf16
  tensor-core peak (from :data:`PEAK_BF16_TFLOPS`, by name; unknown GPUs get null);
* for the ``--preset`` model size (``paper``: ViT-B/16 at 224 px, 4 frames, BERT-base-shaped
  6 text + 6 fusion layers; ``vit-b16`` where that recipe is missing), SMAUG and the dense baseline trained on the same synthetic
  batches (:func:`train.cost.synthetic_batch`), their steps interleaved with the order swapped
  every round (as ``train.bench`` does), in bf16 autocast (fp16 + gradient scaling where the GPU
  has no bf16): clips/s, median step time, peak memory, FLOPs per clip
  (:func:`train.cost.count_step_flops`), model-FLOPs utilisation against the peak, and the
  speed-up smaug / dense; all of it eager, eager with gradient checkpointing (memory and speed
  against eager) and under ``torch.compile`` (compiled / eager);
* DALI's GPU decoder against the CPU loader on a few real shards made here with ffmpeg:
  whether their frames agree within :data:`DALI_FRAME_TOLERANCE`, and each one's clips/s; or
  the reason it was skipped (no DALI, no ffmpeg, no PyAV / webdataset).

Every speed figure is a ratio against a baseline measured in the same run (dense; eager; the
CPU loader), beside the absolute numbers. ``--smoke`` runs the same code on the CPU in seconds
(a tiny model, fp32, compile off, DALI skipped with the reason recorded): the test suite runs it.

The text tower: the preset's, when its folder is there (the paper preset builds BERT-base with
random weights from that folder's config and vocabulary); otherwise a BERT-base-shaped folder
written to a temporary folder (speed does not depend on the weights), recorded under
``text_tower``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.config import (
    ConfigError, apply_overrides, deep_merge, load_params, load_recipe, recipe_path, section,
)
from train import cost
from train.config import TrainerConfig

log = logging.getLogger("train.gpu_check")
BASELINE, CANDIDATE = "dense", "smaug"
FALLBACK_PRESET = "vit-b16"

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a substring of the device name; first
# match wins, so the specific names come before the general ones.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM ("H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("RTX A6000", 154.8),
]

# DALI (NVDEC + GPU resize) against the CPU path (libavcodec + torch resize) on the same clips,
# in normalised units (pixel / 255 - mean) / std, std ~0.22: decoders and resize kernels round
# differently, so the frames agree closely but not bit for bit. 0.1 is ~6 of 255 grey levels.
DALI_FRAME_TOLERANCE = {"mean_abs": 0.1}

# Smoke mode: the loader/model of tests/train/conftest.py's TINY, small enough for seconds on CPU.
SMOKE_OVERRIDES = [
    "loader.image_size=32", "loader.num_frames=2", "loader.batch_size=4", "loader.max_len=16",
    "model.video.image_size=32", "model.video.patch_size=8", "model.video.num_frames=2",
    "model.video.width=32", "model.video.depth=2", "model.video.heads=2",
    "model.text.num_layers=2", "model.text.freeze_layers=1", "model.text.max_len=16",
    "model.text.arch=null",  # the tiny random folder's own shape, not the preset's BERT-base
    "model.fusion.layers=1", "model.fusion.heads=2", "model.embed_dim=16",
    "model.mvm.decoder_width=16", "model.mvm.decoder_heads=2", "model.mvm.decoder_depth=1",
    "model.sparsify.layers=[0]",
]
# BERT-base (hidden 768, 12 heads, FFN 3072, 12 layers) and, for smoke mode, a 32-wide one.
RANDOM_BERT = {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
               "num_hidden_layers": 12}
RANDOM_BERT_SMOKE = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                     "num_hidden_layers": 2}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="paper",
                   help=f"recipe overlay with the model size (default paper; {FALLBACK_PRESET} if missing)")
    p.add_argument("--params", default=None, help="params.yaml (default: the repository's)")
    p.add_argument("--out", default="results/bench/gpu.json")
    p.add_argument("--smoke", action="store_true",
                   help="the same code on the CPU in seconds: tiny model, fp32, compile off, no DALI")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (default: the preset's loader)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per recipe and mode (default 10; smoke 2)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per recipe and mode first (default 3, compilation happens here; smoke 1)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="also time torch.compile (auto: on a GPU, not in --smoke)")
    p.add_argument("--dali", choices=("auto", "off"), default="auto",
                   help="DALI against the CPU loader where DALI, ffmpeg, PyAV and webdataset are present")
    p.add_argument("--dali-clips", type=int, default=32, help="clips in the shards made for the DALI part")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="wall-time budget: the compiled runs are skipped (saying so) when the eager ones "
                        "took more than 40%% of it, as compiling takes longer than running")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 2 if args.smoke else 10
    if args.warmup is None:
        args.warmup = 1 if args.smoke else 3
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


# --------------------------------------------------------------------------- the device


def peak_bf16_tflops(name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "platform": platform.platform()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, capability=list(torch.cuda.get_device_capability(device)),
                    memory_bytes=int(props.total_memory), bf16=bool(torch.cuda.is_bf16_supported()),
                    cudnn=torch.backends.cudnn.version())
    else:
        info.update(name=platform.processor() or platform.machine(), capability=None, bf16=None,
                    cpus=os.cpu_count())
    info["peak_bf16_tflops"] = peak_bf16_tflops(info["name"]) if device.type == "cuda" else None
    return info


# --------------------------------------------------------------------------- the model


def resolve_preset(name: str) -> tuple[str, str | None]:
    """(preset to use, note): the fallback with a message when ``name`` is not a recipe here."""
    try:
        recipe_path(name)
        return name, None
    except ConfigError:
        if name == FALLBACK_PRESET:
            raise
        note = (f"preset {name!r} is not in pipeline/recipes/ (not merged yet?); "
                f"using {FALLBACK_PRESET!r} instead")
        log.warning("%s", note)
        return FALLBACK_PRESET, note


def run_params(args, recipe: str, preset: str, extra: list[str]) -> dict:
    """params.yaml, the recipe (what is trained), the preset (at what size), then ``extra``."""
    return apply_overrides(deep_merge(load_params(args.params, recipe=recipe), load_recipe(preset)), extra)


def write_random_bert(folder: Path, shape: dict[str, int], *, weights: bool = True) -> Path:
    """A BERT checkpoint folder with random weights and a vocabulary that has BERT's special
    tokens where bert-base-uncased has them (the model reads only their ids; batches here are
    synthetic token ids, so no tokenizer is needed). ``weights=False``: config and vocabulary
    only, for ``model.text.init: random``, which builds the weights itself."""
    from transformers import BertConfig, BertModel

    vocab = [f"[unused{i}]" for i in range(30522)]
    for i, tok in ((0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]"), (103, "[MASK]")):
        vocab[i] = tok
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        config = BertConfig(vocab_size=len(vocab), **shape)
        if weights:
            BertModel(config, add_pooling_layer=False).save_pretrained(folder)
        else:
            config.save_pretrained(folder)
    finally:
        torch.random.set_rng_state(state)
    return folder


def build_models(args, preset: str, tmp: Path) -> tuple[dict, dict[str, Any]]:
    """Each recipe's (params, model config, loader config), and what the text tower is."""
    from train.data.config import LoaderConfig
    from train.model import ModelConfig
    from pipeline.text_encoder import resolve_text_encoder_dir

    extra = list(SMOKE_OVERRIDES) if args.smoke else []
    text: dict[str, Any] = {}
    probe = section(run_params(args, CANDIDATE, preset, extra), ModelConfig, "model")
    try:
        if args.smoke:
            raise ConfigError("smoke mode: a tiny random text tower")
        text["path"] = str(resolve_text_encoder_dir(probe.text.path))
        text["kind"] = "the preset's"
    except ConfigError as err:
        shape = RANDOM_BERT_SMOKE if args.smoke else RANDOM_BERT
        folder = write_random_bert(tmp / "random-bert", shape,
                                   weights=getattr(probe.text, "init", "pretrained") != "random")
        extra.append(f"model.text.path={folder}")
        text.update(path=str(folder), kind="random weights", shape=shape, why=str(err))
    runs = {}
    for name in (CANDIDATE, BASELINE):
        params = run_params(args, name, preset, extra)
        runs[name] = {"model": section(params, ModelConfig, "model"),
                      "loader": section(params, LoaderConfig, "loader")}
    if runs[CANDIDATE]["loader"] != runs[BASELINE]["loader"]:
        raise RuntimeError("the two recipes must share the loader settings to share batches")
    return runs, text


# --------------------------------------------------------------------------- timing


def precision_for(device: torch.device, smoke: bool) -> str:
    if device.type != "cuda" or smoke:
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(runs: dict, batches: list[dict], device: torch.device, *, precision: str, compiled: bool,
              steps: int, warmup: int, peak_tflops: float | None, grad_checkpointing: bool = False,
              flops: dict[str, float] | None = None, seed: int = 0) -> dict[str, Any]:
    """SMAUG and dense trained on the same batches, steps interleaved, order swapped each round.

    ``flops``: each recipe's FLOPs per clip when already counted (None: count them here). Model
    FLOPs exclude what gradient checkpointing recomputes, so MFU with it uses the eager count.
    """
    from train.distributed import DistInfo
    from train.model import SMAUG
    from train.trainer import Trainer, default_loss

    names = [CANDIDATE, BASELINE]
    batch_size = batches[0]["video"].shape[0]
    dist = DistInfo(device=device)
    trainers: dict[str, Trainer] = {}
    counted = flops is None
    flops = {} if flops is None else dict(flops)
    for name in names:
        torch.manual_seed(seed)
        cfg = TrainerConfig(steps=warmup + steps + 1, warmup=1, precision=precision, compile=compiled,
                            ckpt_every=0, grad_checkpointing=grad_checkpointing)
        trainers[name] = Trainer(SMAUG(runs[name]["model"]), cfg, dist=dist, progress=False, seed=seed)
        if counted:
            f, _ = cost.count_step_flops(trainers[name].model, batches[0], default_loss,
                                         autocast_dtype=trainers[name].autocast_dtype)
            flops[name] = f / batch_size
    times: dict[str, list[float]] = {n: [] for n in names}
    step_memory: dict[str, int] = {n: 0 for n in names}
    peak: dict[str, int] = {n: 0 for n in names}
    t_compile = {n: 0.0 for n in names}
    last: dict[str, dict] = {}
    for i in range(warmup + steps):
        order = names if i % 2 == 0 else names[::-1]
        batch = batches[i % len(batches)]
        for name in order:
            trainer = trainers[name]
            trainer.schedule.apply(trainer.schedule_step)
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            t0 = time.perf_counter()
            last[name] = trainer.train_step([batch])
            sync(device)
            dt = time.perf_counter() - t0
            trainer.step += 1
            if device.type == "cuda":
                top = torch.cuda.max_memory_allocated(device)
                peak[name] = max(peak[name], top)
                step_memory[name] = max(step_memory[name], top - before)
            if i < warmup:
                t_compile[name] += dt
            else:
                times[name].append(dt)
    out: dict[str, Any] = {"precision": precision, "compiled": compiled, "timed_steps": steps,
                           "warmup_steps": warmup, "grad_checkpointing": grad_checkpointing}
    for name in names:
        t = times[name]
        clips_per_s = batch_size * len(t) / sum(t)
        achieved = flops[name] * clips_per_s
        out[name] = {
            "clips_per_s": clips_per_s,
            "step_s_median": statistics.median(t),
            "step_s": t,
            "warmup_s": t_compile[name],  # includes compilation when compiled
            "flops_per_clip": flops[name],
            "achieved_tflops": achieved / 1e12,
            "mfu": achieved / (peak_tflops * 1e12) if peak_tflops else None,
            # CUDA: most memory allocated during a step (both models and their optimiser state
            # are resident), and the most one step added on top of what it started with.
            "peak_memory_bytes": peak[name] if device.type == "cuda" else cost.peak_memory_bytes(device),
            "step_memory_bytes": step_memory[name] if device.type == "cuda" else None,
            "final_loss": last[name]["loss"],
        }
    out["speedup"] = out[CANDIDATE]["clips_per_s"] / out[BASELINE]["clips_per_s"]
    out["speedup_median_step"] = out[BASELINE]["step_s_median"] / out[CANDIDATE]["step_s_median"]
    out["flops_ratio"] = out[BASELINE]["flops_per_clip"] / out[CANDIDATE]["flops_per_clip"]
    del trainers
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


class CheckTimeout(Exception):
    """A part of the check ran past its share of the time budget."""


@contextlib.contextmanager
def alarm_after(seconds: int):
    """Raise :class:`CheckTimeout` in the main thread after ``seconds`` (SIGALRM; inductor's
    compile workers are other processes, the waiting happens in this thread)."""
    def ring(signum, frame):
        raise CheckTimeout(f"past {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- DALI


def dali_missing(device: torch.device) -> str | None:
    """Why the DALI part cannot run here, or None."""
    if device.type != "cuda":
        return "no CUDA GPU (DALI decodes H.264 only on the GPU)"
    why = []
    for module, what in (("nvidia.dali", "DALI (nvidia-dali-cuda120/130)"), ("av", "PyAV (the CPU path)"),
                         ("webdataset", "webdataset (shard reading)")):
        try:
            __import__(module)
        except ImportError:
            why.append(f"{what} not importable")
    if shutil.which("ffmpeg") is None:
        why.append("no ffmpeg on PATH (makes the test shards)")
    return "; ".join(why) or None


def write_shards(folder: Path, clips: int, *, per_shard: int = 8) -> list[str]:
    """H.264 clips from ffmpeg's test sources in the pre-training shard layout (design.md)."""
    import json
    import tarfile
    import io

    patterns = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc"]
    fps, width, height, seconds = 24, 320, 240, 4
    folder.mkdir(parents=True, exist_ok=True)
    encoded = []
    for pattern in patterns:
        path = folder / f"{pattern}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"{pattern}=size={width}x{height}:rate={fps}:duration={seconds}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", str(fps),
                        "-keyint_min", str(fps), "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(path)],
                       check=True)
        encoded.append(path.read_bytes())
        path.unlink()
    urls = []
    for s in range((clips + per_shard - 1) // per_shard):
        url = folder / f"shard-{s:06d}.tar"
        with tarfile.open(url, "w") as tar:
            for j in range(per_shard):
                n = s * per_shard + j
                key = f"clip_{n:05d}"
                meta = {"key": key, "source": f"videos/{key}.mp4", "format": "webvid",
                        "captions": [f"a test pattern number {n}"], "qa": [], "split": "train",
                        "video": {"fps": float(fps), "num_frames": seconds * fps, "width": width,
                                  "height": height, "duration": float(seconds), "codec": "h264",
                                  "pix_fmt": "yuv420p", "keyint": fps},
                        "source_probe": {}, "normalize": {"target_fps": fps, "short_side": height},
                        "extra": {}}
                for ext, data in (("mp4", encoded[n % len(encoded)]), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        urls.append(str(url))
    return urls


def dali_check(loader_cfg, tmp: Path, clips: int, tokenizer_path: str | None) -> dict[str, Any]:
    """Frames of DALI and the CPU loader on the same clips (evaluation mode: no random crop),
    then each one's clips/s over the shards. ``tokenizer_path``: the text tower's folder (its
    vocab.txt makes a WordPiece tokenizer; the captions' ids do not matter here)."""
    from train.data.loader import VideoTextLoader

    urls = write_shards(tmp / "shards", clips)
    cfg = dataclasses.replace(loader_cfg, num_workers=min(8, os.cpu_count() or 1))
    out: dict[str, Any] = {"clips": clips, "tolerance": DALI_FRAME_TOLERANCE}
    first = {}
    for backend in ("cpu", "dali"):
        loader = VideoTextLoader(cfg, urls, train=False, seed=0, backend=backend, tokenizer_path=tokenizer_path)
        t0, n = time.perf_counter(), 0
        t_first = None
        for batch in loader:
            if backend not in first:
                first[backend] = batch
                t_first = time.perf_counter()
            n += len(batch["key"])
        seconds = time.perf_counter() - (t_first or t0)
        rest = n - len(first[backend]["key"])
        out[backend] = {"clips": n, "clips_per_s": rest / seconds if seconds > 0 and rest else None,
                        "startup_s": (t_first or t0) - t0}
    a, b = first["cpu"], first["dali"]
    same = list(a["key"]) == list(b["key"])
    diff = (a["video"].float().cpu() - b["video"].float().cpu()).abs()
    out["frames"] = {"same_keys": same, "mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
                     "shape": list(a["video"].shape)}
    out["frames_agree"] = same and out["frames"]["mean_abs"] <= DALI_FRAME_TOLERANCE["mean_abs"]
    if out["cpu"]["clips_per_s"] and out["dali"]["clips_per_s"]:
        out["speedup"] = out["dali"]["clips_per_s"] / out["cpu"]["clips_per_s"]
    return out


# --------------------------------------------------------------------------- main


def run_check(args) -> dict[str, Any]:
    """The whole check; the report is written to ``args.out`` after every part (``complete``
    false until the end), so a run stopped by a time limit keeps what it measured."""
    device = torch.device("cuda", 0) if torch.cuda.is_available() and not args.smoke else torch.device("cpu")
    t_start = time.perf_counter()
    info = device_info(device)
    report: dict[str, Any] = {"device": info, "smoke": bool(args.smoke), "preset_requested": args.preset,
                              "complete": False}

    def save() -> None:
        report["wall_s"] = time.perf_counter() - t_start
        cost.write_json(Path(args.out), report)
    preset, note = resolve_preset(args.preset)
    report["preset"] = preset
    if note:
        report["preset_note"] = note
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (norms, losses) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp_name:
        tmp = Path(tmp_name)
        runs, text = build_models(args, preset, tmp)
        report["text_tower"] = text
        loader = runs[CANDIDATE]["loader"]
        model_cfg = runs[CANDIDATE]["model"]
        batch_size = args.batch_size or loader.batch_size
        vocab = 30522
        batches = [cost.synthetic_batch(batch_size, loader.frames_per_clip, loader.image_size,
                                        min(loader.max_len, model_cfg.text.max_len), vocab_size=vocab,
                                        device=device, seed=s) for s in range(4)]
        report["shape"] = {"batch_size": batch_size, "frames": loader.frames_per_clip,
                           "image_size": loader.image_size, "text_len": batches[0]["input_ids"].shape[1],
                           "video_width": model_cfg.video.width, "video_depth": model_cfg.video.depth,
                           "patch_size": model_cfg.video.patch_size,
                           "fusion_layers": model_cfg.fusion.layers}
        precision = precision_for(device, args.smoke)
        report["precision"] = precision
        kw = dict(steps=args.steps, warmup=args.warmup, peak_tflops=info["peak_bf16_tflops"])
        report["eager"] = time_mode(runs, batches, device, precision=precision, compiled=False, **kw)
        save()
        # Gradient checkpointing: the activation memory it saves and the recompute it costs,
        # against the eager runs above (same batches, same seeds).
        report["grad_checkpointing"] = time_mode(runs, batches, device, precision=precision, compiled=False,
                                                 grad_checkpointing=True, **kw,
                                                 flops={n: report["eager"][n]["flops_per_clip"]
                                                        for n in (CANDIDATE, BASELINE)})
        if device.type == "cuda":
            report["grad_checkpointing_ratios"] = {
                n: {"step_memory": report["grad_checkpointing"][n]["step_memory_bytes"]
                    / report["eager"][n]["step_memory_bytes"],
                    "clips_per_s": report["grad_checkpointing"][n]["clips_per_s"]
                    / report["eager"][n]["clips_per_s"]}
                for n in (CANDIDATE, BASELINE)}
        save()
        compile_on = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
        spent = time.perf_counter() - t_start
        if compile_on and args.compile == "auto" and spent > 0.4 * args.budget_s:
            report["compiled"] = {"skipped": f"the eager part took {spent:.0f} s of the {args.budget_s:.0f} s "
                                             "budget (--budget-s; --compile on forces it)"}
        elif compile_on:
            # What is left of the budget, less a minute for the DALI part: compiling the two
            # models can take minutes, and an unfinished compile must not eat the whole check.
            limit = max(30, int(args.budget_s - (time.perf_counter() - t_start) - 60))
            try:
                with alarm_after(limit):
                    report["compiled"] = time_mode(runs, batches, device, precision=precision,
                                                   compiled=True, **kw)
                report["compile_speedup"] = {
                    n: report["compiled"][n]["clips_per_s"] / report["eager"][n]["clips_per_s"]
                    for n in (CANDIDATE, BASELINE)}
            except Exception as err:  # a compiler failure is a finding, not the end of the check
                timed_out = isinstance(err, CheckTimeout) or "CheckTimeout" in repr(err)
                log.exception("torch.compile part %s", "timed out" if timed_out else "failed")
                report["compiled"] = {"skipped": (
                    f"the compiled runs did not finish within {limit} s (--budget-s; compile time "
                    "is in the eager-vs-compiled trade-off too)" if timed_out
                    else f"torch.compile failed: {type(err).__name__}: {err}"[:2000])}
        else:
            report["compiled"] = {"skipped": "--compile off" if args.compile == "off"
                                  else "smoke mode / no GPU (--compile on forces it)"}
        save()
        why = "--dali off" if args.dali == "off" else dali_missing(device)
        if why is None:
            try:
                report["dali"] = dali_check(loader, tmp, args.dali_clips, text["path"])
            except Exception as err:
                log.exception("DALI check failed")
                report["dali"] = {"skipped": f"failed: {type(err).__name__}: {err}"[:2000]}
        else:
            report["dali"] = {"skipped": why}
    report["complete"] = True
    save()
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        report = run_check(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    e = report["eager"]
    lines = [f"{report['device']['name']} ({report['precision']}, preset {report['preset']}): "
             f"smaug {e[CANDIDATE]['clips_per_s']:.1f} clips/s, dense {e[BASELINE]['clips_per_s']:.1f}, "
             f"speed-up {e['speedup']:.2f}x"]
    if e[CANDIDATE]["mfu"] is not None:
        lines.append(f"  MFU eager: smaug {e[CANDIDATE]['mfu']:.1%}, dense {e[BASELINE]['mfu']:.1%}")
    c = report["compiled"]
    lines.append("  compiled: " + (c["skipped"] if "skipped" in c else
                                   f"speed-up {c['speedup']:.2f}x; compiled/eager smaug "
                                   f"{report['compile_speedup'][CANDIDATE]:.2f}x, dense "
                                   f"{report['compile_speedup'][BASELINE]:.2f}x"))
    d = report["dali"]
    lines.append("  dali: " + (d["skipped"] if "skipped" in d else
                               f"frames agree {d['frames_agree']} (mean abs {d['frames']['mean_abs']:.3f}), "
                               f"speed-up over CPU {d.get('speedup', float('nan')):.2f}x"))
    lines.append(f"  -> {args.out} ({report['wall_s']:.0f} s)")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
