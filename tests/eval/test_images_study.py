"""The image + video study's table: rendered from two arms' files, refused when the arms differ in
anything but the data or in steps."""

from __future__ import annotations

import json
from pathlib import Path

from eval import images_study


def _arm(folder: Path, run: str, ranks: list[int], *, steps: int = 400, counts: dict | None = None,
         sources: list | None = None, order: float = 50.0) -> None:
    videos = [i // 2 for i in range(len(ranks))]  # 2 captions per video
    r1 = 100.0 * sum(r <= 1 for r in ranks) / len(ranks)
    normal = {"per_query": {"video": videos, "vtc": ranks},
              "vtc": {"t2v": {"R@1": r1, "R@1_ci95": [r1 - 5, r1 + 5], "R@5": 50.0, "R@10": 80.0, "MdR": 3.0}},
              "order_pairs": {"vtc": order, "vtm": 50.0}}
    (folder / "eval").mkdir(parents=True, exist_ok=True)
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    (folder / "eval" / f"{run}.json").write_text(json.dumps({"recipe": run, "zero_shot": {"retrieval": {"normal": normal}}}))
    cost = {"recipe": run, "steps": steps, "clips_per_step": 16}
    if counts is not None:
        cost.update(samples_per_source=counts, sources=sources)
    (folder / "metrics" / f"pretrain-{run}.json").write_text(json.dumps(cost))


def _argv(tmp_path: Path) -> list[str]:
    return ["--video-only-dir", str(tmp_path / "main"), "--mixed-dir", str(tmp_path / "study"),
            "--video-only-seeds-dir", str(tmp_path / "ablation"),
            "--out", str(tmp_path / "images_vs_video.md"), "--json", str(tmp_path / "images_vs_video.json"),
            "--no-check"]


def test_table_has_both_arms_their_counts_and_the_difference(tmp_path):
    _arm(tmp_path / "main", "smaug", [1, 3, 2, 1, 5, 7, 1, 2, 9, 4] * 2)
    _arm(tmp_path / "study", "smaug-images", [1, 1, 2, 1, 1, 7, 1, 2, 9, 1] * 2,
         counts={"video": 4480, "images": 1920},
         sources=[{"name": "video", "shards": "data/shards/pretrain", "weight": 0.7},
                  {"name": "images", "shards": "data/shards/images", "weight": 0.3}], order=45.0)
    assert images_study.main(_argv(tmp_path)) == 0
    data = json.loads((tmp_path / "images_vs_video.json").read_text())
    assert data["video_only"]["samples_per_source"] == {"shards": 6400}  # a one-source run before sources
    assert data["image_video"]["samples_per_source"] == {"video": 4480, "images": 1920}
    assert data["video_only"]["r1"] == [30.0] and data["image_video"]["r1"] == [60.0]
    assert data["r1_difference"] == 30.0 and data["r1_difference_ci95"][0] <= 30.0 <= data["r1_difference_ci95"][1]
    assert data["image_video"]["order_pair_acc"] == 45.0 and data["steps"] == 400 and data["seeds"] == 1
    # the other seeds (params' ablation.extra_seeds) are named as missing, not silently dropped
    assert data["missing"] == ["smaug-seed1", "smaug-seed2", "smaug-images-seed1", "smaug-images-seed2"]
    md = (tmp_path / "images_vs_video.md").read_text()
    assert "| image + video | smaug-images | 400 | video 4480 (70%), images 1920 (30%) | 60.0 | [55.0, 65.0]" in md
    assert "| video only | smaug | 400 | shards 6400 (100%) | 30.0 |" in md
    assert "images weight 0.3" in md and "left out: smaug-seed1" in md and "one seed of" in md


def test_seeds_of_both_arms_enter_the_means_and_the_interval(tmp_path):
    src = [{"name": "video", "shards": "data/shards/pretrain", "weight": 0.7},
           {"name": "images", "shards": "data/shards/images", "weight": 0.3}]
    base = [1, 3, 2, 1, 5, 7, 1, 2, 9, 4] * 2                       # R@1 30
    _arm(tmp_path / "main", "smaug", base)
    _arm(tmp_path / "ablation", "smaug-seed1", [1, 1] + base[2:])  # 35 (one more hit of 20)
    _arm(tmp_path / "ablation", "smaug-seed2", base)                # 30
    mixed = [1, 1, 2, 1, 1, 7, 1, 2, 9, 1] * 2                       # 60
    _arm(tmp_path / "study", "smaug-images", mixed, counts={"video": 4480, "images": 1920}, sources=src)
    _arm(tmp_path / "study", "smaug-images-seed1", [9, 9] + mixed[2:], counts={"video": 4500, "images": 1900},
         sources=src)                                               # 50 (two hits fewer)
    _arm(tmp_path / "study", "smaug-images-seed2", mixed, counts={"video": 4470, "images": 1930}, sources=src)
    assert images_study.main(_argv(tmp_path)) == 0
    data = json.loads((tmp_path / "images_vs_video.json").read_text())
    assert data["seeds"] == 3 and data["missing"] == []
    assert data["video_only"]["runs"] == ["smaug", "smaug-seed1", "smaug-seed2"]
    assert data["video_only"]["r1"] == [30.0, 35.0, 30.0] and data["image_video"]["r1"] == [60.0, 50.0, 60.0]
    assert abs(data["r1_difference"] - 25.0) < 1e-9
    low, high = data["image_video"]["r1_ci95"]
    assert low <= data["image_video"]["r1_mean"] <= high
    md = (tmp_path / "images_vs_video.md").read_text()
    assert "| image + video, mean of 3 seeds | – | 400 | – | 56.7 ± 5.8 |" in md
    assert "| video only | smaug-seed1 | 400 |" in md and "one seed of" not in md


def test_arms_of_other_steps_or_other_settings_are_refused(tmp_path, capsys):
    _arm(tmp_path / "main", "smaug", [1, 2] * 10)
    _arm(tmp_path / "study", "smaug-images", [1, 2] * 10, steps=200, counts={"video": 3200}, sources=[])
    assert images_study.main(_argv(tmp_path)) == 2
    assert "trained smaug: 400, smaug-images: 200 steps" in capsys.readouterr().err
    # dense differs in the model, not only in the data
    differ = images_study.differences_but_data(None, "smaug", "dense")
    assert "model" in {d.split(".")[0] for d in differ}
    assert images_study.differences_but_data(None, "smaug", "smaug-images") == []
    _arm(tmp_path / "study", "dense", [1, 2] * 10)
    assert images_study.main(_argv(tmp_path) + ["--mixed", "dense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: recipe dense: differs from smaug in ") and "model" in err
