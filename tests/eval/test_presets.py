"""Each real-benchmark preset parses a small fixture in its real format; missing data is named."""

import shutil
from pathlib import Path

import pytest

from eval.benchmarks import MissingData, available, check_inputs, check_shards, load_preset, parse_split
from pipeline.config import load_params

FIXTURES = Path(__file__).parent / "fixtures" / "raw"

# preset -> (split -> expected (video id, text) of the first usable row, number of rows)
EXPECTED = {
    "msrvtt_ret": {"train": (("video0", "a man is singing on stage"), 3),
                   "test": (("video7020", "a woman is cooking pasta in a kitchen"), 2)},
    "didemo_ret": {"test": (("test_vid_a", "a dog runs in the dog sits down"), 2)},
    "anet_ret": {"test": (("v_val_1A", "A man enters the gym. He lifts weights."), 2)},
    "msrvtt_qa": {"train": (("video7010", "what is the man doing?"), 3)},
    "msvd_qa": {"test": (("vid1", "what is the man doing?"), 3)},
    "tgif_action": {"train": (("tumblr_aaa", "what does the man do 3 times?"), 2)},
    "tgif_transition": {"test": (("tumblr_aaa", "what does the man do 3 times?"), 2)},
    "tgif_frameqa": {"train": (("tumblr_ccc", "what is the color of the shirt?"), 2)},
    "msrvtt_mc": {"test": (("video7010", "a man is playing a guitar on stage"), 3)},
    "lsmdc_mc": {"test": (("1010_TITANIC_00.41.32.072-00.41.40.196", "The ship leaves the dock."), 3)},
    "lsmdc_fib": {"test": (("1010_TITANIC_00.41.32.072-00.41.40.196", "The _____ leaves the dock."), 2)},
    "lsmdc_ret": {"test": (("1010_TITANIC_00.41.32.072-00.41.40.196", "The ship leaves the dock."), 2)},
    "anet_qa": {"test": (("v_Kx3KtqR0o1Q", "what color is the dog"), 3)},
    "msvd_ret": {"test": (("-_hbPLsZvvo_19_25", "a man is playing a guitar"), 5)},
    "ssv2_template": {"test": (("74225", "Spinning something that quickly stops spinning"), 3)},
    "ssv2_label": {"test": (("74225", "spinning cube that quickly stops spinning"), 3)},
    "pretrain_webvid_cc3m": {"webvid": (("1001", "Aerial view of a beach at sunset"), 2),
                             "cc3m": (("000001", "a lighthouse on a cliff"), 2)},
}


@pytest.fixture
def root(tmp_path):
    """A repository-like root with the fixtures at the presets' paths and empty video folders."""
    shutil.copytree(FIXTURES, tmp_path / "data" / "raw")
    for name in available():
        preset = load_preset(name)
        for split in preset.splits:
            (tmp_path / (split.videos or preset.videos)).mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_every_preset_has_a_fixture():
    assert sorted(EXPECTED) == available()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_parses_its_fixture(name, root):
    preset = load_preset(name)
    check_inputs(preset, root)  # all files present: no error
    for split in preset.splits:
        rows = parse_split(preset, split.name, root)
        assert rows and all(r["row_error"] is None for r in rows), rows
    for split, ((vid, text), count) in EXPECTED[name].items():
        rows = parse_split(preset, split, root)
        assert len(rows) == count
        first = rows[0]
        assert first["video_id"] == vid
        assert (first["caption"] or first["qa"]["question"]) == text


def test_multiple_choice_fixture_keeps_options_and_index(root):
    rows = parse_split(load_preset("tgif_action"), "test", root)
    qa = rows[0]["qa"]
    assert qa["options"] == ["nod", "clap", "jump", "wave", "spin"] and qa["answer_idx"] == 1
    assert qa["answer"] == "clap"


def test_missing_annotation_names_path_and_format(root):
    preset = load_preset("msrvtt_qa")
    (root / "data/raw/msrvtt_qa/test.json").unlink()
    with pytest.raises(MissingData) as err:
        check_inputs(preset, root)
    msg = str(err.value)
    assert str(root / "data/raw/msrvtt_qa/test.json") in msg
    assert "msrvtt_qa" in msg and '"question", "answer", "video_id", "answer_type"' in msg
    assert "train" not in msg.split("test annotations")[0].split("MSRVTT-QA")[-1]  # only the missing split


def test_missing_videos_and_shards_are_named(root):
    preset = load_preset("tgif_action")
    shutil.rmtree(root / "data/raw/tgif/gifs")
    with pytest.raises(MissingData, match="videos: expected a folder .* at .*tgif/gifs"):
        check_inputs(preset, root)
    with pytest.raises(MissingData, match="python -m preprocess --annotations data/raw/tgif_qa/action_test.jsonl"):
        check_shards(preset, root)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(MissingData, match="known presets: .*msrvtt_ret"):
        load_preset("no_such_benchmark")


def test_overrides_are_valid_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\n")
    for name in available():
        data = load_params(params, overrides=load_preset(name).overrides())
        if name == "msrvtt_ret":
            assert data["eval"]["retrieval"]["dataset"] == "MSRVTT (1k-A)"
            assert data["eval"]["num_frames"] == 12
        if name == "msrvtt_qa":
            assert data["eval"]["tasks"] == ["qa"]
            assert data["finetune"]["qa"]["vocab_size"] == 1500
