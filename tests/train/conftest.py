"""Fixtures for the trainer tests: a params file, tiny-model overrides, and real tiny shards.

The shards are real: ffmpeg-encoded H.264 clips (closed GOP, no B-frames, yuv420p) written
with webdataset's TarWriter in the layout of design.md, read by the real loader.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
import webdataset as wds
import yaml

from tests.support import make_h264_clip, params_dict

FPS, WIDTH, HEIGHT = 12, 64, 48
PATTERNS = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc"]
COLOURS = ["red", "blue", "green", "yellow"]
MOTIONS = ["moves left", "moves right", "spins", "stays still"]

# A model small enough for a CPU step in well under a second, same structure as the real one.
TINY = [
    "loader.image_size=32", "loader.num_frames=2", "loader.batch_size=4", "loader.num_workers=0",
    "loader.shuffle_buffer=8", "loader.max_len=16", "loader.backend=cpu",
    "model.video.image_size=32", "model.video.patch_size=8", "model.video.num_frames=2",
    "model.video.width=32", "model.video.depth=2", "model.video.heads=2",
    "model.text.num_layers=1", "model.text.freeze_layers=1", "model.text.max_len=16",
    "model.fusion.layers=1", "model.embed_dim=16",
    "model.mvm.decoder_width=16", "model.mvm.decoder_heads=2",
    "model.sparsify.layers=[0]",
    "pretrain.warmup=1", "pretrain.log_every=1", "pretrain.ckpt_every=0", "pretrain.threads=1",
]


@pytest.fixture(scope="session")
def params_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict()))
    return path


@pytest.fixture(scope="session")
def pretrain_shards(tmp_path_factory) -> Path:
    """16 samples in 2 shards (4 distinct clips, distinct captions), the pretrain layout."""
    folder = tmp_path_factory.mktemp("pretrain_shards")
    clips = {}
    for i, pattern in enumerate(PATTERNS):
        path = folder / f"{pattern}.mp4"
        make_clip(path, pattern, 2.0)
        clips[i] = path.read_bytes()
        path.unlink()
    for s in range(2):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as sink:
            for j in range(8):
                n = s * 8 + j
                key = f"clip_{n:05d}"
                caption = f"a {COLOURS[n % 4]} circle {MOTIONS[(n // 4) % 4]}"
                meta = {
                    "key": key, "source": f"videos/{key}.webm", "format": "webvid",
                    "captions": [caption, f"{caption} slowly"], "qa": [], "split": "train",
                    "video": {"fps": float(FPS), "num_frames": 2 * FPS, "width": WIDTH,
                              "height": HEIGHT, "duration": 2.0, "codec": "h264",
                              "pix_fmt": "yuv420p", "keyint": FPS},
                    "source_probe": {}, "normalize": {"target_fps": FPS, "short_side": HEIGHT},
                    "extra": {},
                }
                sink.write({"__key__": key, "mp4": clips[n % 4], "json": json.dumps(meta).encode()})
    return folder


def run_overrides(tmp: Path, shards: Path, *extra: str) -> list[str]:
    """TINY plus outputs under ``tmp`` and the test shards."""
    return [*TINY, f"pretrain.shards={shards}", f"pretrain.out_dir={tmp / 'models'}",
            f"pretrain.results_dir={tmp / 'results'}", *extra]


@pytest.fixture(autouse=True)
def _outside_repo(tmp_path, monkeypatch):
    """Run each test from its own folder: DVCLive looks for the enclosing git/DVC repository
    from the working directory and must not touch (or trip over) the real one."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def overrides(tmp_path, pretrain_shards):
    """``overrides(*extra)``: the tiny-model overrides with this test's output folders."""
    return lambda *extra: run_overrides(tmp_path, pretrain_shards, *extra)


@pytest.fixture(scope="session")
def tiny_params():
    """``tiny_params(recipe, *extra)``: merged params (fragments + recipe + TINY + extra)."""
    from pipeline.config import load_params

    def make(recipe: str | None = "smaug", *extra: str, path: Path | None = None) -> dict:
        tmp = Path(tempfile.mkdtemp())
        params = tmp / "params.yaml"
        params.write_text(yaml.safe_dump(params_dict()))
        return load_params(params, recipe=recipe, overrides=[*TINY, *extra])

    return make


@pytest.fixture(scope="session")
def real_batches(pretrain_shards, tiny_params):
    """Four batches of four clips from the tiny shards through the real loader (read once)."""
    from pipeline.config import section
    from train.data import LoaderConfig, build_loader

    params = tiny_params("smaug")
    loader = build_loader(section(params, LoaderConfig, "loader"), str(pretrain_shards),
                          train=True, seed=0)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == 4:
            break
    assert len(batches) == 4
    return batches


@pytest.fixture(scope="session")
def build_tiny():
    """``build_tiny(params) -> (model, TrainerConfig)`` with a fixed initial seed."""
    import torch

    from pipeline.config import section
    from train.config import PretrainConfig
    from train.model import SMAUG, ModelConfig

    cache: dict = {}

    def make(params: dict):
        cfg = section(params, ModelConfig, "model")
        key = repr(cfg)
        if key not in cache:  # building loads the text tower from disk: do it once per config
            torch.manual_seed(0)
            cache[key] = SMAUG(cfg)
        return copy.deepcopy(cache[key]), section(params, PretrainConfig, "pretrain")

    return make


def make_clip(path: Path, pattern: str, seconds: float) -> None:
    make_h264_clip(path, pattern, seconds, width=WIDTH, height=HEIGHT, fps=FPS)


def sigusr1_at(step: int):
    """A ``Trainer.train_step`` that sends this process SIGUSR1 as the trainer starts the step
    after ``step`` (the run then checkpoints at the step in flight and exits 75)."""
    import os
    import signal

    from train.trainer import Trainer

    original = Trainer.train_step

    def train_step(self, micro):
        if self.step == step:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    return train_step
