"""SyntheticConfig: presets, and bad values are named."""

from __future__ import annotations


import pytest
import yaml

from pipeline.config import ConfigError, section
from pipeline.synthetic.__main__ import main
from pipeline.synthetic.config import SyntheticConfig

def test_presets_set_the_clip_count():
    assert SyntheticConfig().clip_count == 500
    assert SyntheticConfig(preset="large").clip_count > 2000


@pytest.mark.parametrize("key, value", [
    ("held_out_fraction", 0.5),
    ("held_out_test_share", 1.0),
    ("num_clips", 1),
    ("test_fraction", 0.5),  # fractions no longer sum to 1 -> named on train_fraction
    ("formats", ["mp4", "mkv"]),
    ("sizes", [[161, 120]]),
    ("gif_fps", 12),
    ("preset", "huge"),
    ("duration_range", [5, 2]),
    ("captions_per_clip", "five"),
    ("nonsense", 1),
])
def test_bad_value_is_rejected_with_its_name(key, value):
    with pytest.raises(ConfigError) as err:
        section({"synthetic": {key: value}}, SyntheticConfig, "synthetic")
    expected = "synthetic.train_fraction" if key == "test_fraction" else f"synthetic.{key}"
    assert str(err.value).startswith(expected), str(err.value)


def test_cli_reports_bad_value_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--out", str(out), "--num-clips", "1", "--no-progress"]) == 2
    assert "synthetic.num_clips" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_to_overwrite_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["--out", str(out), "--num-clips", "4", "--no-progress"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_generates_with_params_file(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"synthetic": {
        "num_clips": 4, "seed": 3, "duration_range": [1.0, 1.0], "workers": 1, "formats": ["gif", "mp4"],
        "pair_fraction": 0.0, "pretrain_clips": 0}}))
    out = tmp_path / "gen"
    assert main(["--params", str(params), "--out", str(out), "--no-progress"]) == 0
    assert (out / "videos.tar").exists() and (out / "meta.json").exists()
    assert '"clips": 4' in capsys.readouterr().out
    # a rerun replaces its own earlier output
    assert main(["--params", str(params), "--out", str(out), "--num-clips", "5", "--no-progress"]) == 0
    assert '"clips": 5' in capsys.readouterr().out
