"""The built-in benchmark's MSRVTT-MC-style and LSMDC-FiB-style test sets: written in the
releases' formats, read back by the real readers, and hard in the intended way."""

import json

from pipeline.synthetic.caption_tests import BLANKABLE, FIB_BLANK, caption_choices
from preprocess.formats import FIB_BLANK as READER_BLANK
from preprocess.formats import read_rows


def test_the_blank_is_the_one_the_reader_knows():
    from eval.mlm_qa import FIB_BLANK as EVAL_BLANK

    assert FIB_BLANK == READER_BLANK == EVAL_BLANK == "_____"


def test_caption_choice_file_reads_as_msrvtt_mc(tiny_dataset, tiny_meta):
    path = tiny_dataset / "annotations/msrvtt_mc/msrvtt_mc_test.json"
    entries = json.loads(path.read_text())
    test = [c for c in tiny_meta["clips"] if c["split"] == "test"]
    assert [e["video"] for e in entries] == [c["file"].split("/")[-1] for c in test]
    fmt, rows = read_rows(path)
    rows = list(rows)
    assert fmt == "msrvtt_mc" and all(r["row_error"] is None for r in rows)
    for row, clip in zip(rows, test):
        qa = row["qa"]
        assert len(qa["options"]) == 5 and len(set(qa["options"])) == 5
        assert qa["options"][qa["answer_idx"]] == clip["captions"][0] == row["caption"]
        for k, option in enumerate(qa["options"]):  # no distractor could also describe the clip
            if k != qa["answer_idx"]:
                assert not any(option in c or c in option for c in clip["captions"])
    assert len({r["qa"]["answer_idx"] for r in rows}) > 1  # the right one is not always in one place


def test_distractors_are_the_most_similar_captions_first():
    def clip(stem, caption):
        return {"stem": stem, "file": f"videos/{stem}.mp4", "captions": [caption]}

    clips = [clip("a", "a red star grows, then a blue circle shrinks"),
             clip("b", "a blue circle shrinks, then a red star grows"),  # its temporal-order partner
             clip("c", "a green star grows, then a blue circle shrinks"),  # one colour differs
             clip("d", "a yellow square rotates"), clip("e", "a pink cross appears"),
             clip("f", "an orange triangle moves up"), clip("g", "a red star grows")]  # true of "a": never
    (entry,) = caption_choices(clips[:1], seed=0, others=clips)
    wrong = [c for k, c in enumerate(entry["caption"]) if k != entry["answer"]]
    assert wrong[:2] == [clips[1]["captions"][0], clips[2]["captions"][0]]
    assert "a red star grows" not in entry["caption"]


def test_fill_in_the_blank_file_reads_as_lsmdc_fib(tiny_dataset, tiny_meta):
    path = tiny_dataset / "annotations/lsmdc/LSMDC16_FIB_test.csv"
    rows = list(read_rows(path, "lsmdc_fib")[1])
    test = {c["stem"]: c for c in tiny_meta["clips"] if c["split"] == "test"}
    assert rows and all(r["row_error"] is None for r in rows)
    for row in rows:
        qa = row["qa"]
        assert qa["answer"] in BLANKABLE and qa["question"].count(FIB_BLANK) == 1
        assert " an _____" not in qa["question"]  # the article does not give a colour away
        filled = qa["question"].replace(FIB_BLANK, qa["answer"])
        assert filled.split()[1:] == test[row["video_id"]]["captions"][0].split()[1:]
