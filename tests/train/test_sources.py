"""Several shard sets in one run (pretrain.sources): config rules, mixing by weight on real
shards (a video set and a still-image set made by `python -m preprocess`), resuming the mix, and
a tiny pre-training run whose metrics count the samples of each source."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT, ConfigError, load_params, section
from train import pretrain
from train.config import PretrainConfig


@pytest.fixture(scope="session")
def image_shards(tmp_path_factory) -> Path:
    """Real image shards: the synthetic benchmark's still frames of a 16-clip plan (CC3M TSV +
    PNGs, pipeline/synthetic/stills.py) through `python -m preprocess`."""
    from pipeline.synthetic.config import SyntheticConfig
    from pipeline.synthetic.plan import plan_clips
    from pipeline.synthetic.stills import TSV, write_stills

    root = tmp_path_factory.mktemp("stills")
    clips, _ = plan_clips(SyntheticConfig(seed=3, num_clips=16, train_fraction=0.8, val_fraction=0.1,
                                          test_fraction=0.1))
    count = write_stills(root, clips, seed=3)
    out = root / "shards"
    done = subprocess.run([sys.executable, "-m", "preprocess", "--annotations", str(root / TSV), "--videos",
                           str(root / "stills.tar"), "--out", str(out), "--workers", "1", "--shard-size", "4"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "stats_summary.json").read_text())
    assert summary["rows"] == summary["ok"] == count >= 8
    return out


def sources_override(video: Path, images: Path, w_video: float = 0.7, w_images: float = 0.3) -> list[str]:
    return ["pretrain.shards=null",
            f"pretrain.sources=[{{name: video, shards: {video}, weight: {w_video}}}, "
            f"{{name: images, shards: {images}, weight: {w_images}}}]"]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("overrides, message", [
    (["pretrain.sources=[{name: v, shards: x, weight: 1}]"],
     "pretrain.sources: set together with pretrain.shards"),
    (["pretrain.shards=null", "pretrain.sources=[{name: v, shards: x, wieght: 1}]"],
     "pretrain.sources[0].wieght: unknown key; did you mean weight?"),
    (["pretrain.shards=null", "pretrain.sources=[{name: v, shards: x, weight: 1}, {name: i, shards: y, weight: 0}]"],
     "pretrain.sources[1].weight: must be > 0, got 0.0 (source 'i')"),
    (["pretrain.shards=null", "pretrain.sources=[{name: v, shards: x, weight: -0.5}]"],
     "pretrain.sources[0].weight: must be > 0"),
    (["pretrain.shards=null", "pretrain.sources=[{name: v, shards: x, weight: 1}, {name: v, shards: y, weight: 1}]"],
     "pretrain.sources: source name 'v' is used twice"),
    (["pretrain.shards=null", "pretrain.sources=[{name: v, weight: 1}]"], "pretrain.sources[0]: "),
    (["pretrain.shards=null"], "pretrain.shards: must name a shard folder or pattern (or set pretrain.sources)"),
])
def test_bad_sources_are_rejected_by_name(overrides, message):
    with pytest.raises(ConfigError) as err:
        section(load_params(overrides=overrides), PretrainConfig, "pretrain")
    assert str(err.value).startswith(message), str(err.value)


def test_shards_alone_is_one_source_of_weight_one():
    pre = section(load_params(), PretrainConfig, "pretrain")
    assert pre.sources == [] and [(s.name, s.shards, s.weight) for s in pre.source_list()] == \
        [("shards", "data/shards/pretrain", 1.0)]


def test_a_missing_source_folder_stops_the_run_naming_it(tmp_path, params_file, overrides, pretrain_shards, capsys):
    argv = ["--params", str(params_file), "--no-progress",
            *overrides(*sources_override(pretrain_shards, tmp_path / "no_such_images"))]
    assert pretrain.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: pretrain.sources[1].shards (source 'images'): ") and "no_such_images" in err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- mixing


def test_source_draws_follow_the_weights():
    from train.sources import pick_source

    n = 4000
    draws = [pick_source(0, i, ["video", "images"], [0.7, 0.3]) for i in range(n)]
    share = draws.count("images")
    assert abs(share - 0.3 * n) < 4 * math.sqrt(n * 0.3 * 0.7)  # binomial, 4 sigma
    assert draws == [pick_source(0, i, ["video", "images"], [7, 3]) for i in range(n)]  # weights are relative
    assert draws != [pick_source(1, i, ["video", "images"], [0.7, 0.3]) for i in range(n)]  # the seed matters


def _mixed(tiny_params, video: Path, images: Path, state=None):
    from train.data import LoaderConfig, build_loader
    from train.sources import MixedStream

    cfg = section(tiny_params("smaug"), LoaderConfig, "loader")
    loaders = {"video": build_loader(cfg, str(video), train=True, seed=0),
               "images": build_loader(cfg, str(images), train=True, seed=0)}
    return MixedStream.resumed(loaders, {"video": 0.5, "images": 0.5}, seed=0, state=state)


def test_mixing_real_shards_counts_each_source_and_resumes_the_same_sequence(
        tiny_params, pretrain_shards, image_shards):
    n = 48
    stream = _mixed(tiny_params, pretrain_shards, image_shards)
    batches = []
    for batch in stream:
        batches.append(batch)
        if len(batches) == n:
            break
    images = [b for b in batches if all(m.get("media") == "image" for m in b["meta"])]
    videos = [b for b in batches if all(m.get("media") != "image" for m in b["meta"])]
    assert len(images) + len(videos) == n  # one source per batch, never a mix inside one
    assert stream.samples == {"video": sum(len(b["key"]) for b in videos),
                              "images": sum(len(b["key"]) for b in images)}
    assert abs(len(images) - n / 2) < 4 * math.sqrt(n / 4)  # binomial, 4 sigma
    # a still image is a clip of its one frame repeated: every frame of the clip is equal
    clip = images[0]["video"][0]
    assert clip.shape[0] == 2 and bool((clip[0] == clip[1]).all())
    # both sources ran past their epochs (16 clips each = 4 batches) and kept going
    assert stream.state()["sources"]["video"]["epoch"] >= 1 and stream.state()["sources"]["images"]["epoch"] >= 1

    # resume after 30 batches: the same next batches, from the same sources, counted on
    first = _mixed(tiny_params, pretrain_shards, image_shards)
    it = iter(first)
    for _ in range(30):
        next(it)
    state = json.loads(json.dumps(first.state()))  # as a checkpoint stores it
    resumed = _mixed(tiny_params, pretrain_shards, image_shards, state=state)
    rest = [b for _, b in zip(range(n - 30), resumed)]
    assert [b["key"] for b in rest] == [b["key"] for b in batches[30:]]
    assert resumed.samples == stream.samples


# --------------------------------------------------------------------------- a run


def test_a_run_on_video_and_images_counts_samples_per_source(tmp_path, params_file, overrides,
                                                              pretrain_shards, image_shards, capsys):
    steps = 12
    argv = ["--params", str(params_file), "--no-progress",
            *overrides(f"pretrain.steps={steps}", *sources_override(pretrain_shards, image_shards))]
    assert pretrain.main(argv) == 0
    out = capsys.readouterr().out
    cost = json.loads((tmp_path / "results" / "metrics" / "pretrain-smaug.json").read_text())
    counts = cost["samples_per_source"]
    # 12 batches of up to 4 (an epoch's last batch may be short: 13 images make 4 + 4 + 4 + 1)
    assert set(counts) == {"video", "images"} and steps < sum(counts.values()) <= steps * 4
    assert counts["video"] % 4 == 0  # 16 clips: whole batches
    assert [s["name"] for s in cost["sources"]] == ["video", "images"]
    assert [s["weight"] for s in cost["sources"]] == [0.7, 0.3]
    live = json.loads((tmp_path / "results" / "dvclive" / "pretrain-smaug" / "metrics.json").read_text())
    assert live["samples_per_source"] == counts  # what `dvc metrics show` reads
    assert f"samples per source: video {counts['video']} " in out and f"images {counts['images']} " in out

    # the same command again: finished with these settings and these sources' shards
    assert pretrain.main(argv) == 0
    assert "already finished" in capsys.readouterr().out
    # other weights are other settings: refused, naming the difference
    argv2 = ["--params", str(params_file), "--no-progress",
             *overrides(f"pretrain.steps={steps}", *sources_override(pretrain_shards, image_shards, 0.5, 0.5))]
    assert pretrain.main(argv2) == 2
    assert "pretrain.sources" in capsys.readouterr().err


def test_a_source_on_dali_mixes_as_on_the_cpu_backend(tiny_params, pretrain_shards, image_shards):
    """Each source is its own loader, so a source may run on DALI (here its CPU decoders: JPEG;
    H.264 needs the GPU) and the mix is the same: the same sources in the same order, the same
    samples, the image clips equal to rounding."""
    pytest.importorskip("nvidia.dali", reason="nvidia-dali is not installed")
    import torch

    from train.data import LoaderConfig
    from train.data.loader import VideoTextLoader
    from train.sources import MixedStream

    cfg = section(tiny_params("smaug", "loader.shuffle_buffer=0"), LoaderConfig, "loader")

    def stream(image_backend: str) -> MixedStream:
        loaders = {"video": VideoTextLoader(cfg, str(pretrain_shards), train=False, seed=0, backend="cpu"),
                   "images": VideoTextLoader(cfg, str(image_shards), train=False, seed=0, backend=image_backend,
                                             dali_device="cpu")}
        return MixedStream.resumed(loaders, {"video": 0.5, "images": 0.5}, seed=0, state=None)

    dali, cpu = stream("dali"), stream("cpu")
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255
    for _, bd, bc in zip(range(12), dali, cpu):
        assert bd["key"] == bc["key"]
        diff = ((bd["video"].cpu() - bc["video"]) * std).abs()
        assert diff.mean() < 1.0
    assert dali.samples == cpu.samples and dali.samples["images"] > 0 and dali.samples["video"] > 0


def test_a_ddp_resume_gives_rank_0_the_runs_counts_and_the_others_none():
    """A mixed stream's position as a DDP checkpoint records it (counts over all ranks): rank 0
    resumes with every source's counts, another rank with none, both at the same place."""
    from train.run import rank_share

    source = {"epoch": 2, "batch": 1, "skipped": 3, "skipped_keys": [["k", "bad"]], "samples": 70}
    recorded = {"drawn": 9, "sources": {"video": dict(source), "images": {**source, "samples": 40}}}
    assert rank_share(recorded, 0) == recorded
    other = rank_share(recorded, 1)
    assert other["drawn"] == 9 and recorded["sources"]["video"]["samples"] == 70  # a copy
    for name in ("video", "images"):
        assert other["sources"][name] == {"epoch": 2, "batch": 1, "skipped": 0, "skipped_keys": [],
                                          "samples": 0}
