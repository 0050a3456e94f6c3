"""The issue-17 benchmarks (MSRVTT-MC, LSMDC-MC/FiB/retrieval, ActivityNet-QA, MSVD retrieval,
SSv2-Template/Label): their fixtures, in the releases' formats, read through the readers, and
`eval.benchmarks check` against cards that pin the fixtures' counts and checksums."""

import shutil
from pathlib import Path

import pytest
import yaml

from eval.benchmarks import load_preset, main, parse_split
from preprocess.formats import AnnotationError, detect_format, read_rows

FIXTURES = Path(__file__).parent / "fixtures" / "raw"

# The fixtures' test files, pinned: (annotation rows, sha256). The presets' own cards leave the
# release files' sha256 null (no copy to hash here); these pin the fixtures instead.
FIXTURE_TEST_PINS = {
    "msrvtt_mc": (3, "5047a0ae1d812fa60bb4d30aa55734370df3bd9687863186c7ecaafee841c4a0"),
    "lsmdc_mc": (3, "04c1b0479093b6b612f1a83eb34fd2e6e85885e7acafbb497d40874cba1689ea"),
    "lsmdc_fib": (2, "09678b5de249b4d735305929f517d108ba601b57e886e066cd31854fb47d52b5"),
    "anet_qa": (3, "42a55c5de916f7cf979837c3fdecf206dc3b5a45a5dc91f262831f4bfdaa0c91"),
    "msvd_ret": (5, "5f72fc933d5bc2401d1b863b89c05429ce5b8f5ec8be044914031b13933c5ca5"),
    "lsmdc_ret": (2, "a8c90b2343880e1416d7fa0063fbc9f221cd66af1fc0dafc89e3bb165b22c324"),
    "ssv2_template": (3, "9bc9ecd4f7392d2f183f9f5568c9cb90a5e88b0a1183aa55420cf14eda466d91"),
    "ssv2_label": (3, "9bc9ecd4f7392d2f183f9f5568c9cb90a5e88b0a1183aa55420cf14eda466d91"),
}


@pytest.fixture
def root(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "data" / "raw")
    for name in FIXTURE_TEST_PINS:
        (tmp_path / load_preset(name).videos).mkdir(parents=True, exist_ok=True)
    return tmp_path


def _pinned_preset(tmp_path: Path, name: str, *, items: int | None = None) -> Path:
    """The preset ``name`` as a user's file whose card pins the fixture's test file."""
    raw = yaml.safe_load((Path("eval/presets") / f"{name}.yaml").read_text())
    count, sha = FIXTURE_TEST_PINS[name]
    raw["card"]["splits"] = {"test": {"items": items or count, "sha256": sha}}
    path = tmp_path / f"{name}_fixture.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _test_file(root: Path, name: str) -> Path:
    return root / next(s.annotations for s in load_preset(name).splits if s.name == "test")


@pytest.mark.parametrize("name", sorted(FIXTURE_TEST_PINS))
def test_check_matches_the_fixture_and_names_a_tampered_byte(name, root, tmp_path, capsys):
    preset = _pinned_preset(tmp_path, name)
    assert main(["check", str(preset), "--root", str(root), "--zero-shot"]) == 0
    assert "card: matched" in capsys.readouterr().out
    test = _test_file(root, name)
    data = bytearray(test.read_bytes())
    i = data.index(b"e")  # one byte in the text (the row count stays)
    data[i:i + 1] = b"E"
    test.write_bytes(bytes(data))
    assert main(["check", str(preset), "--root", str(root), "--zero-shot"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH test.sha256: card" in out and "card: MISMATCH in test.sha256" in out
    assert "test.items" not in out.split("card: MISMATCH")[1]


@pytest.mark.parametrize("name", ["msrvtt_mc", "lsmdc_fib", "anet_qa", "ssv2_label"])
def test_check_names_a_count_mismatch(name, root, tmp_path, capsys):
    count, _ = FIXTURE_TEST_PINS[name]
    assert main(["check", str(_pinned_preset(tmp_path, name, items=count + 7)), "--root", str(root),
                 "--zero-shot"]) == 1
    assert f"MISMATCH test.items: card {count + 7}, yours {count}" in capsys.readouterr().out


def test_the_presets_own_cards_say_the_release_checksum_is_unknown(root, capsys):
    """Real release files cannot be hashed here: the card leaves sha256 null and check says the copy
    is unverified and how to pin it, instead of inventing a checksum."""
    assert main(["check", "msrvtt_mc", "--root", str(root)]) == 1  # the fixture has 3 items, the release 2,990
    out = capsys.readouterr().out
    assert "not pinned: test.sha256" in out and "pin yours in card.splits.test" in out
    assert "MISMATCH test.items: card 2990, yours 3" in out


def test_caption_multiple_choice_rows_keep_options_answer_and_the_right_caption(root):
    mc = parse_split(load_preset("msrvtt_mc"), "test", root)
    assert [r["qa"]["answer_idx"] for r in mc] == [0, 2, 4]
    assert mc[1]["qa"]["question"] == "" and len(mc[1]["qa"]["options"]) == 5
    assert mc[1]["caption"] == mc[1]["qa"]["answer"] == "a chef slices onions in a kitchen"
    lsmdc = parse_split(load_preset("lsmdc_mc"), "test", root)  # the public test's index is 1-based
    assert [r["qa"]["answer_idx"] for r in lsmdc] == [1, 2, 4]
    assert lsmdc[1]["qa"]["answer"] == "Water floods the hall."
    assert lsmdc[1]["qa"]["options"][1] == 'Someone pours "tea" into a cup.'  # quotes kept as written
    assert lsmdc[0]["want_path"] == "1010_TITANIC/1010_TITANIC_00.41.32.072-00.41.40.196.avi"
    train = parse_split(load_preset("lsmdc_mc"), "train", root)  # train lists the right sentence first
    assert {r["qa"]["answer_idx"] for r in train} == {0}


def test_clipbert_jsonl_msrvtt_mc_reads_the_same_items(tmp_path):
    path = tmp_path / "msrvtt_mc_test.jsonl"
    path.write_text('{"qid": "mc-0", "clip_name": "video7010", "answer": 1, "options": ["a", "b c", "d", "e", "f"]}\n')
    assert detect_format(path) == "msrvtt_mc"
    (row,) = read_rows(path)[1]
    assert row["video_id"] == "video7010" and row["qa"]["answer"] == "b c" and row["qa"]["id"] == "mc-0"


def test_fib_and_anet_qa_rows(root):
    fib = parse_split(load_preset("lsmdc_fib"), "test", root)
    assert fib[0]["qa"]["question"] == "The _____ leaves the dock." and fib[0]["qa"]["answer"] == "ship"
    qa = parse_split(load_preset("anet_qa"), "test", root)
    assert [(r["video_id"], r["qa"]["answer"], r["qa"]["answer_type"]) for r in qa] == [
        ("v_Kx3KtqR0o1Q", "brown", "color"), ("v_Kx3KtqR0o1Q", "2", "number"), ("v_Zr9ZT4Rq6k0", "beach", "location")]


def test_ssv2_template_unbrackets_the_slots_and_label_keeps_the_filled_text(root):
    template = parse_split(load_preset("ssv2_template"), "test", root)
    label = parse_split(load_preset("ssv2_label"), "test", root)
    assert template[1]["caption"] == "Showing something next to something"
    assert label[1]["caption"] == "showing a bottle next to a cup"
    assert template[1]["want_path"] == "116154.webm" and template[1]["video_id"] == "116154"


@pytest.mark.parametrize("fmt, text, message", [
    ("lsmdc_fib", "c1\t0\t1\t0\t1\tno blank here\tword\n", "has 0 blanks"),
    ("lsmdc_fib", "c1\t0\t1\t0\t1\tthe _____\n", "needs clip id, 4 time stamps, sentence, answer"),
    ("lsmdc_mc", "c1\t0\t1\t0\t1\ta\tb\tc\td\te\t9\n", "answer 9 is not an index into the 5 options"),
    ("lsmdc", "c1\t0\t1\n", "needs the clip id, 4 time stamps and the text"),
])
def test_bad_lsmdc_lines_are_failed_rows_naming_why(tmp_path, fmt, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    (row,) = read_rows(path, fmt)[1]
    assert message in row["row_error"]


def test_anet_qa_needs_its_answers_file(tmp_path):
    q = tmp_path / "test_q.json"
    q.write_text('[{"video_name": "x", "question": "what?", "question_id": "v_x_1"}]')
    with pytest.raises(AnnotationError, match="answers file .*test_a.json is missing"):
        list(read_rows(q, "anet_qa")[1])
    (tmp_path / "test_a.json").write_text("[]")
    (row,) = read_rows(q, "anet_qa")[1]
    assert "no answer for question_id 'v_x_1' in test_a.json" in row["row_error"]
