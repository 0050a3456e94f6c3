"""A tiny synthetic benchmark, generated once per test session."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.synthetic import SyntheticConfig, generate

# Short clips, every format, enough test units for seen and unseen combinations.
TINY = dict(
    seed=7, num_clips=16, workers=2, duration_range=(1.0, 2.0), pair_fraction=0.5,
    train_fraction=0.6, val_fraction=0.1, test_fraction=0.3, held_out_test_share=0.5,
    captions_per_clip=4, pretrain_clips=0,  # the benchmark alone (params.yaml adds 1,500 extra clips)
)


def tiny_config(**changes) -> SyntheticConfig:
    return SyntheticConfig(**{**TINY, **changes})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "synthetic"
    generate(tiny_config(), out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_meta(tiny_dataset) -> dict:
    return json.loads((tiny_dataset / "meta.json").read_text())


def read_members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def decode(data: bytes) -> tuple[np.ndarray, dict]:
    """All frames [T, H, W, 3] of an encoded video, and what its stream says."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        info = {"codec": stream.codec_context.name, "format": container.format.name,
                "fps": float(stream.average_rate or stream.guessed_rate),
                "width": stream.codec_context.width, "height": stream.codec_context.height}
    return frames, info


@pytest.fixture(scope="session")
def tiny_decoded(tiny_dataset) -> dict[str, tuple[np.ndarray, dict]]:
    return {name: decode(data) for name, data in read_members(tiny_dataset / "videos.tar").items()}


# Test modules cannot import this file under --import-mode=importlib: hand them the helpers.
@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def members_of():
    return read_members


@pytest.fixture(scope="session")
def decode_video():
    return decode
