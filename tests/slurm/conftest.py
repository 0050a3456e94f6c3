"""A real one-node SLURM for the launcher tests, and a tiny WebVid-style video set.

``slurm_cluster`` (session) starts munged, slurmctld and slurmd through
``python tests/slurm/local_slurm.py`` (installing slurm-wlm/munge with apt-get when
missing) and stops them at the end, unless a cluster was already running (then it is left as
found). Where the machine cannot run the daemons (not root, no apt, a daemon fails) the tests
that need it are skipped with the reason, including the daemons' log tails.

The videos are uniform-colour clips (every frame, every crop and every clip look the same) with
one caption, so any two batches of the same size hold the same pixels and tokens: a 2-rank DDP
run and a 1-process run with 2 accumulated micro-batches must then log the same losses.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.slurm import local_slurm  # noqa: E402
from tests.support import params_dict

CLIPS = 8  # good clips; one broken file follows them
SHARD_SIZE = 2  # -> 5 shards, the last one holding only the broken file's failed row
CAPTION = "a blue square stays still"

# Tiny model and loader (the trainer tests' sizes), colour jitter off so all clips are identical.
TINY = [
    "loader.image_size=32", "loader.num_frames=2", "loader.batch_size=2", "loader.num_workers=0",
    "loader.shuffle_buffer=4", "loader.max_len=16", "loader.backend=cpu",
    "loader.brightness=0.0", "loader.contrast=0.0", "loader.saturation=0.0",
    "model.video.image_size=32", "model.video.patch_size=8", "model.video.num_frames=2",
    "model.video.width=32", "model.video.depth=2", "model.video.heads=2",
    "model.text.num_layers=1", "model.text.freeze_layers=0", "model.text.max_len=16",
    "model.fusion.layers=1", "model.embed_dim=16",
    "model.mvm.decoder_width=16", "model.mvm.decoder_heads=2", "model.sparsify.layers=[0]",
    # VTC contrasts against the all-gathered global batch, which accumulation cannot imitate
    # (the reference's VTC sees 2 clips, each rank's 4: the losses differ from step 1); without
    # it a DDP step is exactly an accumulated step. VTC's DDP weight: tests/model/test_vtc_ddp.py.
    "model.objectives.vtc=0.0",
    "pretrain.warmup=1", "pretrain.log_every=1", "pretrain.ckpt_every=0", "pretrain.threads=1",
]


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("local SLURM needs root (apt-get install, munged, slurmd)")
    if local_slurm.is_running():
        c = local_slurm.cluster()
        os.environ.setdefault("SLURM_CONF", str(c.conf))
        yield c
        return
    try:
        c = local_slurm.start()
    except local_slurm.LocalSlurmError as err:
        pytest.skip(f"cannot run a local SLURM here: {err}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)
    try:
        yield c
    finally:
        local_slurm.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *args], check=True)


@pytest.fixture(scope="session")
def webvid_set(tmp_path_factory) -> Path:
    """``webvid.csv`` + ``videos/``: 8 uniform-colour H.264 clips (2 s or 3 s) and one non-video."""
    root = tmp_path_factory.mktemp("webvid")
    videos = root / "videos"
    videos.mkdir()
    for i in range(CLIPS):
        ffmpeg("-f", "lavfi", "-i", f"color=c=0x3366cc:size=80x64:rate=12:duration={2 + i % 2}",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
               str(videos / f"clip_{i:05d}.mp4"))
    (videos / f"clip_{CLIPS:05d}.mp4").write_text("not a video\n")
    with (root / "webvid.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        for i in range(CLIPS + 1):
            w.writerow([f"clip_{i:05d}", f"https://example.invalid/{i}.mp4", "PT00H00M02S", "videos", CAPTION])
    return root


@pytest.fixture(scope="session")
def dataset(webvid_set):
    """Facts about ``webvid_set`` and the preprocessing arguments for it, for the tests."""

    class Dataset:
        clips, shard_size, root = CLIPS, SHARD_SIZE, webvid_set

        @staticmethod
        def args(out: Path) -> list[str]:
            return preprocess_args(webvid_set, out)

    return Dataset


def preprocess_args(data: Path, out: Path) -> list[str]:
    return ["--annotations", str(data / "webvid.csv"), "--videos", str(data / "videos"),
            "--out", str(out), "--shard-size", str(SHARD_SIZE), "--no-progress",
            # no transcode cache: each run must really transcode (and the repo stays clean)
            "preprocess.cache_dir=null"]


@pytest.fixture(scope="session")
def local_shards(webvid_set, tmp_path_factory) -> Path:
    """The single-machine run: ``python -m preprocess`` as is."""
    from preprocess.__main__ import main

    out = tmp_path_factory.mktemp("shards_local") / "pretrain"
    assert main(preprocess_args(webvid_set, out)) == 0
    return out


@pytest.fixture(scope="session")
def slurm_shards(slurm_cluster, webvid_set, tmp_path_factory):
    """The same through a SLURM job array (2 shards per task, 2 tasks at once)."""
    from pipeline.launch.preprocess import main

    root = tmp_path_factory.mktemp("shards_slurm")
    out = root / "pretrain"
    code = main(["--launch", "slurm", *preprocess_args(webvid_set, out),
                 f"launch.log_dir={root / 'logs'}", "launch.slurm.shards_per_task=2",
                 "launch.slurm.array_parallelism=2", "launch.slurm.cpus_per_task=1",
                 "launch.slurm.poll_s=1", "launch.slurm.timeout_min=10",
                 "launch.slurm.signal_delay_s=30"])
    return out, root / "logs", code


@pytest.fixture(scope="session")
def tiny_overrides():
    return list(TINY)


@pytest.fixture(scope="session")
def params_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict()))
    return path
