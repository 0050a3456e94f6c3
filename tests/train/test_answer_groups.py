"""QA answers that may be one class (audit 2026-12-04, finding 9): normalize_answer stays
ClipBERT's (lowercase, collapse spaces), and fine-tuning warns about answers that VQA-style
normalisation would fold together."""

import logging

from train.tasks import (AnswerVocab, loose_answer_key, normalize_answer, similar_answer_groups,
                         warn_similar_answers)

# the audit's vocabulary after fine-tuning on free-form answers
AUDIT_VOCAB = ["yes", "2", "a dog", "bars", "new york", "red", "red.", "the dog", "two", "rouge", "🐶"]


def test_normalize_answer_is_unchanged():
    # the committed results' label ids depend on it
    assert normalize_answer("  Red  ") == "red" and normalize_answer("red.") == "red."
    assert normalize_answer("The   Dog") == "the dog"
    assert AnswerVocab.from_training_answers(["Red", "red", "red.", "a dog"], 10).answers == ["red", "a dog", "red."]


def test_loose_key_drops_punctuation_leading_articles_and_number_words():
    assert loose_answer_key("The dog.") == "dog"
    assert loose_answer_key("an apple") == loose_answer_key("apple!") == "apple"
    assert loose_answer_key("two dogs") == loose_answer_key("2 dogs") == "2 dogs"
    assert loose_answer_key("ten") == "10" and loose_answer_key("eleven") == "eleven"
    assert loose_answer_key("2.5") == "2.5" != loose_answer_key("25")  # a point between digits stays
    assert loose_answer_key("the") == "the"  # an article alone is an answer of its own
    assert loose_answer_key("🐶") == loose_answer_key("?!") == ""


def test_groups_of_the_audit_vocabulary():
    assert similar_answer_groups(AUDIT_VOCAB) == [["2", "two"], ["a dog", "the dog"], ["red", "red."]]


def test_no_groups_among_distinct_answers():
    # the built-in benchmark's kind of answers: colours, shapes, actions, number words only
    assert similar_answer_groups(["red", "blue", "circle", "move left", "three", "two", "the", "a"]) == []
    assert similar_answer_groups(["🐶", "🐱", "?"]) == []  # no words: nothing to compare
    assert warn_similar_answers(["red", "blue"]) is None


def test_one_warning_naming_at_most_five_groups(caplog):
    with caplog.at_level(logging.WARNING, logger="train.tasks"):
        message = warn_similar_answers(AUDIT_VOCAB)
    assert [r.getMessage() for r in caplog.records] == [message]
    assert message.startswith("QA answers that may be one class: '2' / 'two'; 'a dog' / 'the dog'; 'red' / 'red.'")
    assert "normalize_answer only lowercases and collapses spaces" in message

    many = [w for i in range(7) for w in (f"word{i}", f"word{i}.")]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train.tasks"):
        message = warn_similar_answers(many)
    assert len(caplog.records) == 1
    assert "'word4' / 'word4.'" in message and "word5" not in message and "(and 2 more groups)" in message
