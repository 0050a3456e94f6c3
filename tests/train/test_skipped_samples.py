"""Samples the loader skips as corrupt are counted in the run's metrics file, once each."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile

from train import pretrain
from train.trainer import EXIT_INTERRUPTED, Trainer


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def shards_with_broken_samples(good, folder):
    """The tiny shards, each with one broken sample in front: a truncated mp4 / bad JSON."""
    folder.mkdir()
    for i, src in enumerate(sorted(good.glob("*.tar"))):
        with tarfile.open(src) as old, tarfile.open(folder / src.name, "w") as new:
            members = [(m.name, old.extractfile(m).read()) for m in old.getmembers()]
            video = next(data for name, data in members if name.endswith(".mp4"))
            meta = json.loads(next(data for name, data in members if name.endswith(".json")))
            if i == 0:
                add_member(new, "clip_bad_trunc.mp4", video[: len(video) // 3])
                add_member(new, "clip_bad_trunc.json", json.dumps({**meta, "key": "clip_bad_trunc"}).encode())
            else:
                add_member(new, "clip_bad_json.mp4", video)
                add_member(new, "clip_bad_json.json", b'{"key": "clip_bad_json", "video": {')
            for name, data in members:
                add_member(new, name, data)
    return folder


def test_skipped_samples_in_metrics_once_across_a_resume(tmp_path, params_file, overrides, pretrain_shards,
                                                         monkeypatch):
    shards = shards_with_broken_samples(pretrain_shards, tmp_path / "shards")
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=4", f"pretrain.shards={shards}")]
    original = Trainer.train_step

    def stop_at_2(self, micro):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    monkeypatch.setattr(Trainer, "train_step", stop_at_2)
    assert pretrain.main(argv) == EXIT_INTERRUPTED  # stopped in epoch 0 ...
    monkeypatch.setattr(Trainer, "train_step", original)
    assert pretrain.main(argv) == 0  # ... resumed: the batches before step 2 are read again
    metrics = json.loads((tmp_path / "results" / "metrics" / "pretrain-smaug.json").read_text())
    assert metrics["skipped_samples"] == 2
    assert sorted(k for k, _ in metrics["skipped_keys"]) == ["clip_bad_json", "clip_bad_trunc"]
    assert all(reason for _, reason in metrics["skipped_keys"])


def shards_with_captions(good, folder, captions: list[str]):
    """The tiny shards with every sample's captions replaced by ``captions``."""
    folder.mkdir()
    for src in sorted(good.glob("*.tar")):
        with tarfile.open(src) as old, tarfile.open(folder / src.name, "w") as new:
            for m in old.getmembers():
                data = old.extractfile(m).read()
                if m.name.endswith(".json"):
                    data = json.dumps({**json.loads(data), "captions": captions}).encode()
                add_member(new, m.name, data)
    return folder


def shards_without_captions(good, folder):
    """The tiny shards with every sample's captions emptied (a video-only collection)."""
    return shards_with_captions(good, folder, [])


def test_shards_without_captions_stop_with_one_error_naming_the_reason(tmp_path, params_file, overrides,
                                                                       pretrain_shards, capsys):
    shards = shards_without_captions(pretrain_shards, tmp_path / "shards")
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=2", f"pretrain.shards={shards}")]
    assert pretrain.main(argv) == 2  # a data problem, not a traceback
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert "all 16 samples were skipped" in line
    assert "16 x ValueError: sample <key> has no captions" in line  # the reason, counted once, key removed
    assert "clip_000" in line  # and the first samples by name
    assert not list((tmp_path / "models").rglob("*.safetensors"))  # nothing half-made left behind


def test_a_small_collection_warns_that_its_batches_are_short(tmp_path, params_file, overrides, caplog):
    # 16 clips over 2 workers at batch 6: each worker reads 8 clips -> 6 + 2, so 4 of 16 clips
    # come in short batches (25%, over the 10% the warning allows); 6 steps: past one epoch
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=6", "loader.batch_size=6", "loader.num_workers=2")]
    with caplog.at_level("WARNING", logger="train.run"):
        assert pretrain.main(argv) == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "train.run"]
    assert len(warnings) == 1, warnings
    assert "fewer than loader.batch_size=6 clips" in warnings[0]
    assert "2 loader worker(s)" in warnings[0]


def test_a_collection_filling_its_batches_does_not_warn(tmp_path, params_file, overrides, caplog):
    argv = ["--params", str(params_file), "--no-progress",
            *overrides("pretrain.steps=6", "loader.batch_size=4", "loader.num_workers=2")]
    with caplog.at_level("WARNING", logger="train.run"):
        assert pretrain.main(argv) == 0
    assert not [r for r in caplog.records if r.name == "train.run"]
