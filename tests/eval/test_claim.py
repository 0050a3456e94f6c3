"""The ablation table and the claim from intervals (eval.ablation, eval.claim), on results files
written as eval.evaluate and train.pretrain write them (per-query ranks, params hashes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from eval.ablation import main as ablation_main
from pipeline.config import load_params
from pipeline.provenance import EVAL_KEYS, FIELD, PRETRAIN_KEYS, stamp
from tests.support import params_dict

VIDEOS, CAPTIONS = 100, 5


@pytest.fixture
def ws(tmp_path):
    params = params_dict()
    params["ablation"].update({
        "eval_dirs": [str(tmp_path / "eval"), str(tmp_path / "ablation/eval")],
        "metrics_dirs": [str(tmp_path / "metrics"), str(tmp_path / "ablation/metrics")],
        "sparsify_off_dir": str(tmp_path / "off"), "out_dir": str(tmp_path / "tables"),
        "speed_bench": str(tmp_path / "bench" / "ablation_speed.json"),
        "json_dir": str(tmp_path / "metrics"), "bootstrap": 400})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return {"root": tmp_path, "params": path}


def ranks_with(r1: float, seed: int) -> list[int]:
    """Per-query ranks (5 captions per video) with R@1 of exactly ``r1`` %; misses at rank 2..40.
    The same seed hits the same queries first, so two runs of one seed differ only by ``r1``."""
    rng = np.random.default_rng(seed)
    queries = VIDEOS * CAPTIONS
    hit = np.zeros(queries, bool)
    hit[rng.permutation(queries)[:round(r1 * queries / 100)]] = True
    return [1 if h else int(rng.integers(2, 40)) for h in hit]


def write_run(ws, run: str, recipe: str, r1: float, seed: int, *, where: str = "", steps: int = 240,
              wall: float = 300.0, vtm_loss: float = 0.40, folder: str = "eval") -> None:
    root = ws["root"] / where
    ranks = ranks_with(r1, seed)
    videos = [v for v in range(VIDEOS) for _ in range(CAPTIONS)]
    r = np.asarray(ranks)
    t2v = {"R@1": 100.0 * np.mean(r <= 1), "R@5": 100.0 * np.mean(r <= 5), "R@10": 100.0 * np.mean(r <= 10),
           "MdR": float(np.median(r))}
    params = load_params(ws["params"])
    data = {"recipe": run, "params": {}, "checkpoints": {},
            "zero_shot": {"retrieval": {"dataset": "synthetic", "normal": {
                "vtc": {"t2v": t2v}, "per_query": {"video": videos, "vtc": ranks},
                "order_pairs": {"vtc": 50.0 + r1 / 2, "vtm": 50.0, "num_clips": 40,
                                "pairs": {"num_pairs": 20, "text": r1, "video": 10.0, "group": r1 / 2}}, "num_videos": VIDEOS}}},
            FIELD: stamp(params, EVAL_KEYS)}
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / f"{run}.json").write_text(json.dumps(data))
    if folder != "eval":
        return
    seed_override = [f"pretrain.seed={run.rsplit('seed', 1)[1]}"] if "-seed" in run else []
    cost = {"recipe": recipe, "steps": steps, "train_wall_s": wall, "clips_per_s": 10.0, "flops_per_clip": 3.6e9,
            "tokens": {"video_tokens_visible": 72.0, "video_tokens_final": 19.0},
            "final_losses": {"vtm": vtm_loss, "vtc": 2.0},
            FIELD: stamp(load_params(ws["params"], recipe=recipe, overrides=seed_override), PRETRAIN_KEYS,
                         recipe=recipe, overrides=seed_override)}
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "metrics" / f"pretrain-{run}.json").write_text(json.dumps(cost))


def claim_runs(ws, smaug: float, dense: float, equal_time: float, seeds: int) -> None:
    for k in range(seeds):
        suffix, where = ("", "") if k == 0 else (f"-seed{k}", "ablation")
        # smaug and dense share their misses' pattern per seed (same test videos, similar models)
        write_run(ws, f"smaug{suffix}", "smaug", smaug + k, seed=10 * k, where=where, wall=300.0)
        write_run(ws, f"dense{suffix}", "dense", dense + k, seed=10 * k, where=where, wall=800.0)
        write_run(ws, f"dense-equal-time{suffix}", "dense", equal_time + k, seed=10 * k + 5, where=where,
                  steps=90, wall=301.0)


def run_ablation(ws) -> tuple[dict, dict, str, str]:
    assert ablation_main(["--params", str(ws["params"])]) == 0
    root = ws["root"]
    return (json.loads((root / "metrics/claim.json").read_text()), json.loads((root / "metrics/ablation.json").read_text()),
            (root / "tables/claim.md").read_text(), (root / "tables/ablation.md").read_text())


def test_claim_holds_from_three_seeds(ws):
    claim_runs(ws, smaug=40.0, dense=30.0, equal_time=10.0, seeds=3)
    claim, ablation, md, table = run_ablation(ws)
    assert claim["seeds"] == 3 and claim["chance_r1"] == pytest.approx(1.0)
    for role in ("smaug", "dense", "dense_equal_time"):
        entry = claim[role]
        assert set(entry) >= {"r1", "r1_mean", "r1_ci95", "r10_mean", "order_pair_acc", "order_pair_group", "steps",
                              "train_wall_s"}
        assert len(entry["r1"]) == 3 and entry["r1_ci95"][0] <= entry["r1_mean"] <= entry["r1_ci95"][1]
    assert claim["dense_equal_time"]["steps"] == 90 and claim["smaug"]["train_wall_s"] == 300.0
    # equal time is checked, not assumed: 301 s against 300 s
    assert claim["halves"]["equal_time"]["wall_ratio"] == pytest.approx(301.0 / 300.0)
    assert "equal time: dense-equal-time trained 301 s on average against smaug's 300 s (ratio 1.00), within 10%." in md
    assert claim["smaug"]["order_pair_group"] == pytest.approx(20.5)   # seeds r1/2 = 20, 20.5, 21
    smaug_row = next(r for r in ablation["rows"] if r["run"] == "smaug")
    assert (smaug_row["order_pair_text"], smaug_row["order_pair_video"]) == (pytest.approx(41.0), pytest.approx(10.0))
    assert "41.0 / 10.0 / 20.5" in table
    # different seeds hit different captions: the interval of the difference is several points wide
    assert claim["halves"]["equal_steps"]["verdict"] == "holds" and claim["halves"]["equal_steps"]["ci95"][0] > -2
    assert claim["halves"]["equal_time"]["verdict"] == "holds"   # 20 points clear
    assert "| equal steps | smaug within 2 points of dense | 3 vs 3 |" in md and "Rule:" in md
    # the ablation table: every configured row, seeded rows as mean ± std, missing rows named
    rows = {r["run"]: r for r in ablation["rows"]}
    assert list(rows) == ["dense", "mask-only", "mask-no-mvm", "sparsify-only", "smaug", "simvtp", "mac",
                          "singularity", "dense-equal-time"]
    assert rows["smaug"]["seeds"] == 3 and rows["smaug"]["tokens_after_sparsification"] == 19.0
    assert rows["smaug"]["gflop_per_clip"] == pytest.approx(3.6) and rows["smaug"]["vtm"] == "trained"
    assert rows["mac"]["seeds"] == 0 and "mac: not run" in table
    assert " ± " in table.split("| smaug |")[1].split("\n")[0]


def test_one_seed_cannot_tell_unless_the_test_set_interval_decides(ws):
    claim_runs(ws, smaug=30.0, dense=31.0, equal_time=29.0, seeds=1)
    write_run(ws, "mask-only", "mask-only", 25.0, seed=3, where="ablation")
    claim, ablation, md, table = run_ablation(ws)
    assert claim["seeds"] == 1 and len(claim["smaug"]["r1"]) == 1
    same_time = claim["halves"]["equal_time"]
    assert same_time["verdict"] == "cannot tell" and "one seed" in same_time["why"]
    assert "equal time: cannot tell: one seed of smaug, dense-equal-time" in md
    # smaug 1 point below dense with identical misses elsewhere: the video bootstrap alone decides
    assert claim["halves"]["equal_steps"]["verdict"] == "holds" and "one seed" in claim["halves"]["equal_steps"]["why"]
    assert "| mask-only | mask-only | 1 (one seed) |" in table and "(1 seed)" in table


def test_claim_does_not_hold_and_vtm_not_trained_is_said(ws):
    claim_runs(ws, smaug=10.0, dense=30.0, equal_time=30.0, seeds=3)
    write_run(ws, "smaug", "smaug", 10.0, seed=0, vtm_loss=0.64)
    claim, ablation, md, table = run_ablation(ws)
    assert claim["halves"]["equal_steps"]["verdict"] == "does not hold"
    assert claim["halves"]["equal_time"]["verdict"] == "does not hold"
    assert "VTM not trained (loss 0.640 vs prior 0.637)" in table


def test_results_of_other_params_are_refused(ws, capsys):
    claim_runs(ws, smaug=30.0, dense=30.0, equal_time=10.0, seeds=1)
    params = yaml.safe_load(ws["params"].read_text())
    params["model"]["embed_dim"] = 128  # every pretrain run reads it
    ws["params"].write_text(yaml.safe_dump(params))
    assert ablation_main(["--params", str(ws["params"])]) == 2
    err = capsys.readouterr().err
    assert "pretrain-dense.json: made by other params than" in err or "pretrain-smaug.json: made by" in err
    assert "model (file " in err and "params " in err


def test_one_seed_note_quotes_the_measured_seed_spread_not_a_fixed_number():
    from eval.claim import RunScores, compare
    videos = list(range(40))
    hit_first = lambda k: [1 if v < k else 5 for v in videos]  # noqa: E731 - R@1 = k/40
    one = RunScores("dense", ["d0"], videos, [hit_first(10)])
    three = RunScores("smaug", ["s0", "s1", "s2"], videos, [hit_first(8), hit_first(12), hit_first(16)])
    why = compare(three, one, threshold=-2.0, resamples=200, seed=0)["why"]
    # R@1 of 20, 30, 40: std 10.0 across smaug's seeds, quoted as measured
    assert "one seed of dense" in why and "smaug's 3 seeds spread R@1 by std 10.0" in why
    lone = RunScores("smaug", ["s0"], videos, [hit_first(8)])
    assert "not measured" in compare(lone, one, threshold=0.0, resamples=200, seed=0)["why"]


def _retrieval(videos: list[int], ranks: list[int], dataset: str = "synthetic ret_test") -> dict:
    return {"dataset": dataset, "normal": {"per_query": {"video": videos, "vtc": ranks}}}


def test_finetuning_gain_is_paired_over_the_same_test_videos():
    from eval.tables import finetuning_gain
    videos = [v for v in range(50) for _ in range(2)]  # 50 videos, 2 captions each
    zero = [1 if v < 10 else 3 for v in videos]           # R@1 20
    better = [1 if v < 20 else 3 for v in videos]         # R@1 40: every zero-shot hit kept, 10 videos gained
    run = lambda ft: {"recipe": "smaug", "zero_shot": {"retrieval": _retrieval(videos, zero)},  # noqa: E731
                      "finetuned": {"retrieval": ft}}
    (note,) = finetuning_gain([run(_retrieval(videos, better))], 1)
    assert note.startswith("smaug: fine-tuned minus zero-shot t2v R@1 on synthetic ret_test: +20.0 [")
    assert "fine-tuning raises R@1" in note
    (note,) = finetuning_gain([run(_retrieval(videos, zero))], 1)
    assert "+0.0 [+0.0, +0.0], cannot tell: the interval spans 0" in note
    (note,) = finetuning_gain([run(_retrieval(videos, [3 if v < 10 else r for v, r in zip(videos, zero)]))], 1)
    assert "-20.0 [" in note and "fine-tuning lowers R@1" in note
    # another test set, or no per-query ranks: no paired comparison is made
    assert finetuning_gain([run(_retrieval(videos, better, dataset="other"))], 1) == []
    assert finetuning_gain([run({"dataset": "synthetic ret_test", "normal": {}})], 1) == []


def test_finetuned_vtm_status_is_read_from_the_fine_tuning_loss_curve(tmp_path):
    from eval.config import TablesConfig
    from eval.tables import finetune_vtm_status
    cfg = TablesConfig(metrics_dir=str(tmp_path / "results/metrics"))
    assert finetune_vtm_status(cfg, "smaug") is None  # no curve: nothing is claimed either way
    curve = tmp_path / "results/plots/finetune/smaug-retrieval.csv"
    curve.parent.mkdir(parents=True)

    def write(vtm: list[float]) -> None:
        rows = "".join(f"{i + 1},1.0,0.5,{v:.6f}\n" for i, v in enumerate(vtm))
        curve.write_text("step,loss,loss_vtc,loss_vtm\n" + rows)

    write([0.30] * 36 + [0.64] * 4)   # the last 4 steps (a tenth, at least 4) sit at the 1:2 prior
    assert finetune_vtm_status(cfg, "smaug") == "VTM not trained (loss 0.640 vs prior 0.637)"
    write([0.64] * 36 + [0.30] * 4)   # learnt by the end
    assert finetune_vtm_status(cfg, "smaug") is None
    curve.write_text("step,loss,loss_vtc\n1,1.0,1.0\n")  # a VTC-only fine-tuning
    assert finetune_vtm_status(cfg, "smaug") is None


def test_an_equal_time_run_with_another_budget_is_called_out(ws):
    claim_runs(ws, smaug=30.0, dense=30.0, equal_time=20.0, seeds=1)
    write_run(ws, "dense-equal-time", "dense", 20.0, seed=5, steps=90, wall=240.0)  # ran on a faster day
    claim, _, md, _ = run_ablation(ws)
    assert claim["halves"]["equal_time"]["wall_ratio"] == pytest.approx(0.8)
    assert "trained 240 s on average against smaug's 300 s (ratio 0.80): NOT equal time" in md


def test_few_seeds_widen_the_interval_beyond_their_own_range():
    """Three seeds spread 20 / 26 / 32 on 2,000 test videos (the videos' own noise is small): the
    95% interval of the mean is a t interval on 2 degrees of freedom, about 26 +- 15, so it
    reaches well past the seeds' range. Resampling the 3 seeds with replacement could never leave
    [20, 32] and covered the true mean 85% of the time where the seeds' spread dominates."""
    from eval.claim import RunScores, recipe_interval
    videos = list(range(2000))
    rng = np.random.default_rng(0)
    ranks = []
    for r1 in (20, 26, 32):
        hit = np.zeros(len(videos), bool)
        hit[rng.permutation(len(videos))[:r1 * 20]] = True
        ranks.append([1 if h else 3 for h in hit])
    scores = RunScores("smaug", ["s0", "s1", "s2"], videos, ranks)
    low, high = recipe_interval(scores, 20000, 0)
    half_t = 4.303 * 6.0 / np.sqrt(3)  # t(0.975, 2 dof) x std / sqrt(n): 14.9
    assert low < 26 - 0.9 * half_t and high > 26 + 0.9 * half_t
    assert low < 20 - 5 and high > 32 + 5


def test_a_seed_ranked_on_another_test_set_is_refused(ws, capsys):
    """A seed whose per-query list covers other videos (another test set under the same path)
    is refused with the files named, not averaged with the others."""
    claim_runs(ws, smaug=30.0, dense=30.0, equal_time=10.0, seeds=3)
    path = ws["root"] / "ablation" / "eval" / "smaug-seed1.json"
    data = json.loads(path.read_text())
    per_query = data["zero_shot"]["retrieval"]["normal"]["per_query"]
    per_query["video"] = [v % 80 for v in per_query["video"]]  # 80 videos, not 100
    path.write_text(json.dumps(data))
    assert ablation_main(["--params", str(ws["params"])]) == 2
    err = capsys.readouterr().err
    assert "smaug: smaug-seed1" in err and "another test set" in err and "smaug-seed1.json" in err


def test_sparsify_off_is_compared_on_the_same_seeds(ws):
    """Only seed 0 was evaluated without test-time sparsification: the cell sets it beside seed
    0's own R@1 with sparsification and says 1 of 3 seeds, not beside the 3-seed mean."""
    claim_runs(ws, smaug=30.0, dense=30.0, equal_time=10.0, seeds=3)  # smaug seeds 30, 31, 32
    write_run(ws, "smaug", "smaug", 36.0, seed=0, folder="off")
    _, ablation, _, table = run_ablation(ws)
    row = next(r for r in ablation["rows"] if r["run"] == "smaug")
    assert row["r1_sparsify_off"] == pytest.approx(36.0) and row["r1_sparsify_on_same_seeds"] == pytest.approx(30.0)
    assert "36.0 (on: 30.0; 1 of 3 seeds)" in table


def test_a_two_seed_row_says_its_interval_is_heavy_tailed(ws):
    claim_runs(ws, smaug=30.0, dense=30.0, equal_time=10.0, seeds=2)
    _, _, _, table = run_ablation(ws)
    assert "smaug: 2 seeds: their spread enters the interval as Student's t on 1 degree of freedom" in table
    assert "dense: 2 seeds" in table


def write_speed_bench(ws, clips_per_s: dict[str, float], made_with: list[str] = ()) -> None:
    """A one-run speed benchmark as train.ablation_bench writes it; ``made_with``: params changed
    from the current ones (not recorded as overrides, as if params.yaml had said so)."""
    base = clips_per_s["dense"]
    data = {"baseline": "dense", "timed_steps": 6, "warmup_steps": 1, "machine": {"torch_threads": 2},
            "schedule": "one step of every recipe per round",
            "recipes": {name: {"clips_per_s": v, "clips_per_s_vs_baseline": v / base} for name, v in clips_per_s.items()},
            FIELD: stamp(load_params(ws["params"], overrides=list(made_with)), PRETRAIN_KEYS)}
    path = ws["root"] / "bench" / "ablation_speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_one_run_speed_column_compares_recipes_against_dense(ws):
    claim_runs(ws, smaug=40.0, dense=30.0, equal_time=10.0, seeds=1)
    _, ablation, _, table = run_ablation(ws)
    assert all(r.get("clips_per_s_one_run") is None for r in ablation["rows"] if r["seeds"])
    assert "ablation_speed.json not found" in table and ablation["speed_bench"] is None

    write_speed_bench(ws, {"dense": 8.0, "smaug": 20.0, "mac": 18.0})
    _, ablation, _, table = run_ablation(ws)
    rows = {r["run"]: r for r in ablation["rows"]}
    assert rows["smaug"]["clips_per_s_one_run"] == 20.0
    assert rows["smaug"]["clips_per_s_one_run_vs_baseline"] == pytest.approx(2.5)
    # dense at equal time is the dense recipe: the same speed per step
    assert rows["dense-equal-time"]["clips_per_s_one_run_vs_baseline"] == pytest.approx(1.0)
    assert "| 20.00 (2.50x) |" in table.split("| smaug |")[1].split("\n")[0]
    assert "| 8.00 (1.00x) |" in table.split("| dense |")[1].split("\n")[0]
    assert "Clips / s, one run (x baseline)" in table and "compare days as well as recipes" in table


def test_a_speed_bench_of_other_params_is_refused(ws, capsys):
    claim_runs(ws, smaug=40.0, dense=30.0, equal_time=10.0, seeds=1)
    write_speed_bench(ws, {"dense": 8.0, "smaug": 20.0}, made_with=["loader.batch_size=4"])
    assert ablation_main(["--params", str(ws["params"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "ablation_speed.json" in err
    assert not (ws["root"] / "tables" / "ablation.md").exists()
