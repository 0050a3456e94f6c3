"""The studies' reports: the summary compares an arm's seeds with the baseline's over the same
queries, and the steps plot draws the means it prints, refusing missing files and bad specs."""

from __future__ import annotations

import json

import pytest


def _eval_file(path, ranks, videos):
    path.parent.mkdir(parents=True, exist_ok=True)
    r1 = 100.0 * sum(r <= 1 for r in ranks) / len(ranks)
    normal = {"vtc": {"t2v": {"R@1": r1, "R@10": 100.0}}, "per_query": {"video": videos, "vtc": ranks},
              "order_pairs": {"vtc": 50.0, "pairs": {"text": 0.0, "group": 0.0}}}
    path.write_text(json.dumps({"zero_shot": {"retrieval": {"normal": normal}}}))


def test_summary_compares_the_arm_with_the_baseline_over_the_same_queries(tmp_path, monkeypatch):
    from studies.summarise import main

    monkeypatch.chdir(tmp_path)
    videos = [v for v in range(10) for _ in range(2)]                 # 10 videos, 2 captions each
    _eval_file(tmp_path / "base0.json", [1] * 4 + [5] * 16, videos)   # R@1 20
    _eval_file(tmp_path / "base1.json", [1] * 2 + [5] * 18, videos)   # R@1 10
    arm = tmp_path / "results/studies/caption_bank"
    _eval_file(arm / "a/eval/smaug.json", [1] * 10 + [5] * 10, videos)  # R@1 50
    assert main(["--dir", "results/studies/caption_bank", "--arm", "bank=a", "--baseline", "base0.json,base1.json", "--out", "s.json"]) == 0
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["baseline"]["r1_mean"] == 15.0 and out["arms"]["bank"]["r1_mean"] == 50.0
    assert out["arms"]["bank"]["vs_baseline"]["difference"] == 35.0
    with pytest.raises(FileNotFoundError, match="missing/eval/smaug.json"):
        main(["--dir", "results/studies/caption_bank", "--arm", "bank=missing", "--baseline", "base0.json", "--out", "s.json"])


def test_steps_plot_draws_the_means_and_refuses_missing_files(tmp_path, capsys):
    from studies.steps_plot import main

    videos = [v for v in range(10) for _ in range(2)]
    _eval_file(tmp_path / "a.json", [1] * 4 + [5] * 16, videos)      # R@1 20
    _eval_file(tmp_path / "b.json", [1] * 2 + [5] * 18, videos)      # R@1 10
    _eval_file(tmp_path / "c.json", [1] * 8 + [5] * 12, videos)      # R@1 40
    out = tmp_path / "steps.png"
    assert main(["--point", f"400={tmp_path / 'a.json'},{tmp_path / 'b.json'}",
                 "--point", f"800={tmp_path / 'c.json'}", "--reference", f"dense={tmp_path / 'c.json'}",
                 "--target", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "400 steps: R@1 15.0 (20.0, 10.0)" in printed and "800 steps: R@1 40.0" in printed
    assert out.stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="nope.json"):
        main(["--point", f"400={tmp_path / 'nope.json'}", "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["--point", f"many={tmp_path / 'a.json'}", "--out", str(out)])
