"""studies.finetune.subset: pre-training shards without a fine-tuning set's clips."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from studies.finetune import subset


def write_shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def members(path):
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_leaves_out_the_fine_tuning_clips_and_keeps_the_rest_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(subset, "SAMPLES_PER_SHARD", 2)
    (tmp_path / "pre").mkdir(); (tmp_path / "ft").mkdir()
    clips = [(f"clip_{i:05d}", {"json": json.dumps({"i": i}).encode(), "mp4": bytes([i]) * (10 + i)}) for i in range(4)]
    extra = [(f"pretrain_{i:05d}", {"json": b"{}", "mp4": bytes([100 + i]) * 7}) for i in range(3)]
    write_shard(tmp_path / "pre/shard-000000.tar", clips[:3])
    write_shard(tmp_path / "pre/shard-000001.tar", clips[3:] + extra)
    write_shard(tmp_path / "ft/shard-000000.tar", [clips[1], clips[3]])
    (tmp_path / "out").mkdir()
    (tmp_path / "out/shard-000009.tar").write_bytes(b"stale")  # an earlier run's extra shard goes

    summary = subset.write_subset(tmp_path / "pre", tmp_path / "ft", tmp_path / "out")

    assert (summary["kept"], summary["dropped"], summary["missing_from_shards"]) == (5, 2, 0)
    written = sorted((tmp_path / "out").glob("*.tar"))
    assert [p.name for p in written] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    got = [m for p in written for m in members(p)]
    want = [(f"{k}.{ext}", data) for k, ms in [clips[0], clips[2]] + extra for ext, data in ms.items()]
    assert got == want
    assert subset.keys_of(tmp_path / "out").isdisjoint(subset.keys_of(tmp_path / "ft"))


def test_refuses_an_empty_result_and_a_folder_without_shards(tmp_path):
    (tmp_path / "pre").mkdir(); (tmp_path / "empty").mkdir()
    write_shard(tmp_path / "pre/shard-000000.tar", [("clip_00000", {"json": b"{}"})])
    with pytest.raises(ValueError, match="nothing left to pre-train on"):
        subset.write_subset(tmp_path / "pre", tmp_path / "pre", tmp_path / "out")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept/shard-000000.tar").write_bytes(b"an earlier run")
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        subset.write_subset(tmp_path / "empty", tmp_path / "pre", tmp_path / "kept")
    assert (tmp_path / "kept/shard-000000.tar").read_bytes() == b"an earlier run"  # bad input loses nothing


def test_paired_gain_over_seeds(tmp_path):
    from studies.finetune.gain import main, paired_gain
    videos = [v for v in range(40) for _ in range(2)]

    def write(name, zero_hits, tuned_hits, vids=videos):
        ret = lambda hits: {"normal": {"per_query": {"video": vids, "vtc": [1 if v < hits else 4 for v in vids]}}}  # noqa: E731
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"zero_shot": {"retrieval": ret(zero_hits)}, "finetuned": {"retrieval": ret(tuned_hits)}}))
        return str(path)

    up = [write("s0", 8, 16), write("s1", 10, 18)]           # +20 on each seed
    g = paired_gain(up, resamples=300)
    assert g["gain_per_seed"] == [20.0, 20.0] and g["verdict"] == "fine-tuning raises R@1"
    assert 0 < g["gain_ci95"][0] <= 20.0 <= g["gain_ci95"][1]
    mixed = [write("m0", 8, 12), write("m1", 12, 8)]          # +10 and -10: no sign
    assert paired_gain(mixed, resamples=300)["verdict"] == "cannot tell"
    other = write("o", 8, 8, vids=[v for v in range(40) for _ in range(3)])
    with pytest.raises(ValueError, match="another test set"):
        paired_gain([up[0], other])
    assert main(["--arm", "up=" + ",".join(up), "--out", str(tmp_path / "gain.json"), "--resamples", "200"]) == 0
    assert json.loads((tmp_path / "gain.json").read_text())["up"]["gain_mean"] == 20.0
