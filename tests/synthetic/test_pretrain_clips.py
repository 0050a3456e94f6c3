"""``synthetic.pretrain_clips``: extra clips for pre-training only, the benchmark left as it was."""

from __future__ import annotations

import csv
import json

import pytest

from pipeline.config import ConfigError
from pipeline.synthetic import generate
from pipeline.synthetic.plan import plan_clips, plan_pretrain_clips

# Every file a fine-tuning or evaluation stage reads: none may change when extra clips are added.
BENCHMARK_FILES = [
    "annotations/webvid_val.csv", "annotations/msrvtt/MSR_VTT.json",
    "annotations/msrvtt/msrvtt_ret_train.json", "annotations/msrvtt/msrvtt_ret_val.json",
    "annotations/msrvtt/msrvtt_ret_test.json", "annotations/msrvtt_qa/train.json",
    "annotations/msrvtt_qa/test.json", "annotations/tgif_qa/action_train.jsonl",
    "annotations/tgif_qa/action_test.jsonl", "annotations/order_pairs/test.json",
    "annotations/msrvtt_mc/msrvtt_mc_test.json", "stills.tar",
]


def _webvid_rows(root) -> list[dict]:
    with open(root / "annotations" / "webvid_train.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def with_extra(tmp_path_factory, make_config):
    out = tmp_path_factory.mktemp("extra") / "synthetic"
    summary = generate(make_config(pretrain_clips=6), out, progress=False)
    return out, summary


def test_zero_extra_clips_leave_no_trace(tiny_dataset, tiny_meta, members_of):
    # meta.json of a benchmark without extra clips carries no trace of the key, so a benchmark
    # made before it existed keeps its hash (and every DVC result downstream of it)
    assert "pretrain_clips" not in tiny_meta["config"] and "pretrain_clips" not in tiny_meta
    assert not [m for m in members_of(tiny_dataset / "videos.tar") if "pretrain_" in m]


def test_extra_clips_leave_every_benchmark_file_as_it_was(tiny_dataset, tiny_meta, with_extra, members_of):
    out, summary = with_extra
    assert summary["pretrain_clips"] == 6 and summary["clips"] == 16
    for name in BENCHMARK_FILES:
        assert (out / name).read_bytes() == (tiny_dataset / name).read_bytes(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["clips"] == tiny_meta["clips"]
    assert meta["counts"] == {**tiny_meta["counts"], "pretrain": 6}
    # the benchmark's videos are the same bytes; the extra ones follow them in the tar
    ours, theirs = members_of(out / "videos.tar"), members_of(tiny_dataset / "videos.tar")
    assert {k: v for k, v in ours.items() if k in theirs} == theirs
    extra = sorted(set(ours) - set(theirs))
    assert [m.rsplit(".", 1)[0] for m in extra] == [f"videos/pretrain_{i:05d}" for i in range(6)]


def test_extra_clips_are_pretraining_captions_only(tiny_dataset, with_extra):
    out, _ = with_extra
    before, after = _webvid_rows(tiny_dataset), _webvid_rows(out)
    assert after[:len(before)] == before
    added = after[len(before):]
    assert {r["videoid"] for r in added} == {f"pretrain_{i:05d}" for i in range(6)}
    assert len(added) == 6 * 4  # captions_per_clip
    for name in ("msrvtt/MSR_VTT.json", "msrvtt_qa/train.json", "tgif_qa/action_train.jsonl"):
        assert "pretrain_" not in (out / "annotations" / name).read_text(), name


def test_extra_clips_never_show_a_held_out_combination(make_config):
    # many clips, so a leak through a recoloured object would show
    cfg = make_config(num_clips=40, pretrain_clips=300)
    clips, held_out = plan_clips(cfg)
    extra = plan_pretrain_clips(cfg, held_out)
    assert len(extra) == 300 and held_out
    held = set(held_out)
    for clip in extra:
        assert not clip.held_out and not (clip.scene.colour_states() & held), clip.stem
    # drawn like the benchmark: order pairs and every format among them
    assert 0 < sum(c.pair_id is not None for c in extra) < 300
    assert {c.format.name for c in extra} == set(cfg.formats)
    # from their own random streams: no extra clip repeats a benchmark scene
    assert not {c.scene for c in extra} & {c.scene for c in clips}


def test_extra_clip_count_is_checked(make_config):
    with pytest.raises(ConfigError, match="pretrain_clips"):
        make_config(pretrain_clips=-1)
