"""The loader tokenizes with the text tower's own vocabulary, and says when it cannot read the
captions (another language or script than the vocabulary's)."""

from __future__ import annotations

import dataclasses
import shutil

from pipeline.config import section
from pipeline.text_encoder import default_text_encoder_dir
from tests.support import params_dict
from tests.train.test_skipped_samples import shards_with_captions
from train import pretrain
from train.data import LoaderConfig, build_loader
from train.data.text import load_tokenizer, truncation_warning, unknown_token_warning


def test_unreadable_captions_are_named_and_english_ones_pass():
    tokenizer = load_tokenizer(None)
    english = ["a red circle spins", "a dog runs in the park with a frisbee",
               "a man is explaining photosynthesis to students"]
    assert unknown_token_warning(tokenizer, english) is None
    chinese = unknown_token_warning(tokenizer, [*english, "一只猫在沙发上睡觉"])
    assert chinese and "1 of 4 texts" in chinese and "一只猫" in chinese and "model.text.path" in chinese
    cyrillic = unknown_token_warning(tokenizer, [*english, "Собака бежит по парку"])  # no [UNK]: letters
    assert cyrillic and "Собака" in cyrillic
    # punctuation, codes and links in English are not broken words
    assert unknown_token_warning(tokenizer, ["ok (smptebars)", "see https://example.com/a-b_c for #cats",
                                             "model XJ-9000 on sale!!!"]) is None


def test_captions_longer_than_the_text_length_are_reported():
    tokenizer = load_tokenizer(None)
    long = "a person walks into a very large room and then picks up a small red ball from the floor " * 3
    assert truncation_warning(tokenizer, ["a red circle spins"] * 9 + [long], 32) is None  # 10%: fine
    line = truncation_warning(tokenizer, ["a red circle spins"] * 8 + [long] * 2, 32)
    assert line and "2 of 10 texts" in line and "loader.max_len=32" in line


def shuffled_vocab_tower(tmp_path):
    """A copy of the default text tower whose vocabulary has two words' ids swapped."""
    folder = tmp_path / "tower"
    shutil.copytree(default_text_encoder_dir(), folder)
    (folder / "tokenizer.json").unlink()  # the fast tokenizer is rebuilt from vocab.txt
    words = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    i, j = words.index("red"), words.index("blue")
    words[i], words[j] = words[j], words[i]
    (folder / "vocab.txt").write_text("\n".join(words), encoding="utf-8")
    return folder, i, j


def test_the_loader_uses_the_text_towers_vocabulary(tmp_path, pretrain_shards):
    folder, red, blue = shuffled_vocab_tower(tmp_path)
    cfg = dataclasses.replace(section(params_dict(), LoaderConfig, "loader"), image_size=32, num_frames=2,
                              batch_size=16, num_workers=0, backend="cpu", max_len=16)

    def ids_of_red(tokenizer_path):
        batch = next(iter(build_loader(cfg, str(pretrain_shards), train=False, seed=0,
                                       tokenizer_path=tokenizer_path)))
        row = next(n for n, text in enumerate(batch["text"]) if text.split()[1] == "red")
        return batch["input_ids"][row].tolist()

    assert red in ids_of_red(None) and blue not in ids_of_red(None)
    assert blue in ids_of_red(folder) and red not in ids_of_red(folder)


def test_pretraining_warns_about_captions_it_cannot_read(tmp_path, params_file, overrides, pretrain_shards,
                                                          caplog):
    def warnings(shards, name):
        caplog.clear()
        argv = ["--params", str(params_file), "--no-progress",
                *overrides("pretrain.steps=2", f"pretrain.shards={shards}", f"pretrain.out_dir={tmp_path / name}")]
        with caplog.at_level("WARNING", logger="train.pretrain"):
            assert pretrain.main(argv) == 0
        return [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]

    assert warnings(pretrain_shards, "english") == []
    chinese = shards_with_captions(pretrain_shards, tmp_path / "zh", ["一只红色的圆圈在旋转"])
    [line] = warnings(chinese, "chinese")
    assert "8 of 8 texts" in line and "一只红色" in line  # 2 steps of 4 clips
