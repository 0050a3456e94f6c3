"""Protocol cards (eval/cards.py) and `python -m eval.benchmarks check` against them."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from eval.benchmarks import available, load_preset, main

FIXTURES = Path(__file__).parent / "fixtures" / "raw"


def _preset_file(tmp_path: Path, card: dict, *, frames=12) -> Path:
    """msrvtt_qa's preset with ``card``, written outside eval/presets (a user's own file)."""
    raw = yaml.safe_load((Path("eval/presets") / "msrvtt_qa.yaml").read_text())
    raw["params"]["eval.num_frames"] = frames
    raw["card"] = card
    path = tmp_path / "elsewhere" / "my_msrvtt_qa"  # no suffix, not in eval/presets: still a path
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def root(tmp_path):
    shutil.copytree(FIXTURES / "msrvtt_qa", tmp_path / "data/raw/msrvtt_qa")
    (tmp_path / "data/raw/msrvtt/videos").mkdir(parents=True)
    return tmp_path


def _card(root: Path, **test_pin) -> dict:
    test = root / "data/raw/msrvtt_qa/test.json"
    pin = {"items": 3, "sha256": hashlib.sha256(test.read_bytes()).hexdigest(), **test_pin}
    return {"split": "fixture", "test_frames": 12, "frame_sampling": "middle frames", "metric": "accuracy",
            "splits": {"test": pin, "train": {"items": None, "sha256": None}}}


def test_check_passes_on_the_right_copy_and_names_the_tampered_field(root, tmp_path, capsys):
    preset = _preset_file(tmp_path, _card(root))
    assert main(["check", str(preset), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "card: matched" in out and "train.items, train.sha256" in out  # unpinned fields are listed
    test = root / "data/raw/msrvtt_qa/test.json"
    test.write_text(test.read_text().replace("what is the man doing?", "what is the woman doing?", 1))
    assert main(["check", str(preset), "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH test.sha256: card" in out and "card: MISMATCH in test.sha256" in out
    assert "test.items" not in out.split("card: MISMATCH")[1]  # the count still matches


def test_check_names_a_count_mismatch(root, tmp_path, capsys):
    assert main(["check", str(_preset_file(tmp_path, _card(root, items=4))), "--root", str(root)]) == 1
    assert "MISMATCH test.items: card 4, yours 3" in capsys.readouterr().out


def test_zero_shot_check_does_not_demand_training_annotations(root, tmp_path, capsys):
    preset = _preset_file(tmp_path, _card(root))
    (root / "data/raw/msrvtt_qa/train.json").unlink()
    assert main(["check", str(preset), "--root", str(root), "--zero-shot"]) == 0
    assert "card: matched" in capsys.readouterr().out
    assert main(["check", str(preset), "--root", str(root)]) != 0
    assert "train annotations: expected" in capsys.readouterr().err


def test_check_prints_shard_commands_only_for_missing_shards(root, tmp_path, capsys):
    preset = _preset_file(tmp_path, _card(root))
    shards = root / "data/shards/msrvtt_qa_test"
    shards.mkdir(parents=True)
    (shards / "shard-000000.tar").write_bytes(b"")
    main(["check", str(preset), "--root", str(root)])
    out = capsys.readouterr().out
    assert "--out data/shards/msrvtt_qa_train" in out and "--out data/shards/msrvtt_qa_test" not in out
    (root / "data/shards/msrvtt_qa_train").mkdir()
    (root / "data/shards/msrvtt_qa_train/shard-000000.tar").write_bytes(b"")
    main(["check", str(preset), "--root", str(root)])
    out = capsys.readouterr().out
    assert "shard with" not in out and "shards: all present" in out


def test_a_preset_must_state_the_cards_test_frames(root, tmp_path):
    with pytest.raises(ValueError, match=r"eval.num_frames is 4 but card.test_frames is 12"):
        load_preset(_preset_file(tmp_path, _card(root), frames=4))


@pytest.mark.parametrize("bad, message", [
    ({"frames": 12}, "unknown key"),
    ({"test_frames": 0}, "test_frames must be an integer"),
    ({"splits": {"val": {"items": 1}}}, "no split 'val'"),
    ({"splits": {"test": {"sha256": "abc"}}}, "64 lowercase hex"),
])
def test_bad_cards_are_refused_naming_the_field(root, tmp_path, bad, message):
    card = {**_card(root), **bad}
    with pytest.raises(ValueError, match=message):
        load_preset(_preset_file(tmp_path, card))


def test_every_benchmark_preset_has_a_card_pinning_its_test_frames():
    for name in available():
        preset = load_preset(name)
        if preset.task == "pretrain":
            continue
        assert preset.card is not None, name
        assert preset.params["eval.num_frames"] == preset.card.test_frames, name
        assert "test" in {s.name for s in preset.splits} and preset.card.metric, name


def test_protocol_record_of_a_preset_run(root, tmp_path, monkeypatch):
    from eval.benchmarks import protocol_record

    preset = _preset_file(tmp_path, _card(root))
    rec = protocol_record(str(preset), root)
    assert rec["matched"] and rec["dataset"] == "MSRVTT-QA" and rec["test_frames"] == 12
    assert "train.sha256" in rec["unpinned"]
    test = root / "data/raw/msrvtt_qa/test.json"
    test.write_bytes(test.read_bytes() + b"\n")
    rec = protocol_record(str(preset), root)
    assert not rec["matched"] and rec["mismatches"] == ["test.sha256"]


def test_tables_withhold_published_figures_unless_the_card_matched():
    from eval.tables import MSRVTT, reported_gate

    ours = {"finetuned": {"retrieval": {"dataset": MSRVTT}}}
    assert reported_gate([], MSRVTT) is None  # no row of ours: the published column stands alone
    assert reported_gate([{"zero_shot": {"retrieval": {"dataset": "synthetic"}}}], MSRVTT) is None
    assert "no protocol card check" in reported_gate([ours], MSRVTT)
    bad = {**ours, "protocol": {"dataset": MSRVTT, "matched": False, "mismatches": ["test.items", "test.sha256"]}}
    assert reported_gate([bad], MSRVTT) == "withheld: card differs in test.items, test.sha256"
    good = {**ours, "protocol": {"dataset": MSRVTT, "matched": True, "mismatches": []}}
    assert reported_gate([bad, good], MSRVTT) is None
