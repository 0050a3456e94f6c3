"""The claim table: SMAUG against dense at the same steps and the same wall time."""

from __future__ import annotations

import json

from eval import tables as tables_mod
from eval.config import TablesConfig


def eval_file(run: str, r1: float, num_videos: int = 100) -> dict:
    t2v = {"R@1": r1, "R@5": r1 * 3, "R@10": r1 * 5, "MdR": 10.0}
    return {"recipe": run, "params": {"eval": {"retrieval": {"rerank_k": 0}}},
            "checkpoints": {"pretrain": {"path": f"models/pretrain/{run}", "sha256": "0" * 64, "step": 1}},
            "zero_shot": {"retrieval": {"dataset": "synthetic", "normal": {"vtc": {"t2v": t2v}, "num_videos": num_videos}}}}


def write_run(tmp_path, run: str, recipe: str, r1: float, steps: int, wall: float) -> None:
    (tmp_path / "eval").mkdir(exist_ok=True)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    (tmp_path / "eval" / f"{run}.json").write_text(json.dumps(eval_file(run, r1)))
    (tmp_path / "metrics" / f"pretrain-{run}.json").write_text(
        json.dumps({"recipe": recipe, "steps": steps, "train_wall_s": wall}))


def claim(tmp_path) -> tuple[str, str]:
    cfg = TablesConfig(eval_dir=str(tmp_path / "eval"), metrics_dir=str(tmp_path / "metrics"),
                       bench=str(tmp_path / "none.json"), out_dir=str(tmp_path / "tables"), reference_rows=False)
    table = tables_mod.claim_table(tables_mod.load_eval_metrics(tmp_path / "eval"), cfg)
    return table.markdown(), table.csv()


def test_claim_holds_when_close_at_equal_steps_and_ahead_at_equal_time(tmp_path):
    write_run(tmp_path, "smaug", "smaug", 9.0, 240, 200.0)
    write_run(tmp_path, "dense", "dense", 10.5, 240, 560.0)
    write_run(tmp_path, "dense-equal-time", "dense", 4.0, 86, 201.0)
    md, csv = claim(tmp_path)
    rows = csv.splitlines()
    assert rows[1].startswith("candidate,smaug,smaug,240,200,synthetic,9.0,")
    assert rows[2].startswith("same steps,dense,dense,240,560,") and rows[2].endswith(",+1.5")
    assert rows[3].startswith("same wall time,dense-equal-time,dense,86,201,") and rows[3].endswith(",-5.0")
    assert rows[4].startswith("chance,100 test videos,") and ",1.0,5.0,10.0,50.5," in rows[4]
    assert "the claim (within 2 points, or better) holds" in md
    assert "the claim (smaug higher) holds" in md


def test_claim_says_when_it_does_not_hold(tmp_path):
    write_run(tmp_path, "smaug", "smaug", 5.0, 240, 200.0)
    write_run(tmp_path, "dense", "dense", 7.5, 240, 560.0)
    write_run(tmp_path, "dense-equal-time", "dense", 6.0, 86, 199.0)
    md, _ = claim(tmp_path)
    assert "dense is +2.5 R@1 points from smaug; the claim (within 2 points, or better) does not hold" in md
    assert "dense-equal-time is +1.0 R@1 points from smaug; the claim (smaug higher) does not hold" in md
