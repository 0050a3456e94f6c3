"""The ablation table and the paper's claim over seeds: ``python -m eval.ablation [--params FILE]``.

Reads, for every run of ``ablation.rows`` (and ``<row>-seed<k>`` for the ``ablation.seeded``
rows and each of ``ablation.extra_seeds``), the zero-shot evaluation ``<run>.json`` (first found
in ``ablation.eval_dirs``), the pre-training metrics ``pretrain-<run>.json`` (first found in
``ablation.metrics_dirs``) and, where it exists, the evaluation without test-time sparsification
(``ablation.sparsify_off_dir``), and writes:

* ``results/tables/ablation.md`` + ``results/metrics/ablation.json``: per row the video tokens
  per clip after masking and after sparsification, GFLOP per clip, training clips/s and wall
  time, the recipe's clips/s and its ratio to dense's when every recipe is timed in one run
  (``ablation.speed_bench``, written by ``train.ablation_bench``: the training runs' own clips/s
  come from different days, so only this column compares recipes on one machine state), zero-shot t2v R@1/R@5/R@10/MdR (VTC ranking) as mean ± std over seeds, the 95% interval
  of R@1 (test videos resampled, seeds' spread as Student's t), order-pair accuracy, R@1 without sparsification at
  test time, and whether VTM learnt (final loss against its 1:2 prior);
* ``results/tables/claim.md`` + ``results/metrics/claim.json``: each half of the claim as
  "holds", "does not hold" or "cannot tell" from the intervals (eval/claim.py states the rule).

The runs are the stages of ``ablation/dvc.yaml`` (``dvc repro ablation/dvc.yaml``); a plain
``dvc repro`` trains one seed of smaug, dense and dense-equal-time only. A missing run is left
out and named; every input must carry the params hash of its stage's keys equal to the current
params (pipeline/provenance.py), or the program stops naming the file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from eval.claim import RunScores, compare, recipe_interval
from eval.config import AblationConfig
from eval.tables import DASH, Table, fmt, read_json, vtm_status
from pipeline import cli, provenance
from pipeline.config import load_params, section

ABLATION_KEYS = ("ablation",)


def run_names(cfg: AblationConfig, row: str) -> list[str]:
    """``row`` (the top-level seed) and, for seeded rows, ``row-seed<k>`` for each extra seed."""
    return [row] + ([f"{row}-seed{k}" for k in cfg.extra_seeds] if row in cfg.seeded else [])


def first_found(dirs: list[str], name: str, params_path) -> tuple[Path | None, dict | None]:
    for folder in dirs:
        path = Path(folder) / name
        data = read_json(path)
        if data is not None:
            provenance.check(data, path, params_path)
            return path, data
    return None, None


def load_row(cfg: AblationConfig, row: str, params_path) -> dict[str, Any]:
    """Every found run of ``row``: its eval, pre-training metrics and sparsify-off eval."""
    runs, missing = [], []
    for run in run_names(cfg, row):
        path, data = first_found(cfg.eval_dirs, f"{run}.json", params_path)
        retrieval = (data or {}).get("zero_shot", {}).get("retrieval")
        if retrieval is None or "per_query" not in retrieval["normal"]:
            missing.append(run)
            continue
        _, cost = first_found(cfg.metrics_dirs, f"pretrain-{run}.json", params_path)
        _, off = first_found([cfg.sparsify_off_dir], f"{run}.json", params_path)
        runs.append({"run": run, "file": path.as_posix(), "retrieval": retrieval, "cost": cost or {},
                     "sparsify_off": (off or {}).get("zero_shot", {}).get("retrieval")})
    return {"row": row, "runs": runs, "missing": missing}


def load_speed_bench(cfg: AblationConfig, params_path) -> dict | None:
    """Every recipe's clips/s from one interleaved run (train.ablation_bench), or None if absent."""
    path = Path(cfg.speed_bench)
    data = read_json(path)
    if data is None:
        return None
    provenance.check(data, path, params_path)
    return data


def scores_of(row: dict) -> RunScores:
    """The row's seeds as one recipe's draws; they must have been ranked on one test set (the
    same captions of the same videos), or their mean would mix two benchmarks."""
    normal = [r["retrieval"]["normal"] for r in row["runs"]]
    first = normal[0]["per_query"]["video"]
    for r, n in zip(row["runs"][1:], normal[1:]):
        if n["per_query"]["video"] != first or len(n["per_query"]["vtc"]) != len(first):
            raise ValueError(f"{row['row']}: {r['run']} ({r['file']}) was ranked on another test set than "
                             f"{row['runs'][0]['run']} ({len(n['per_query']['video'])} queries over "
                             f"{n.get('num_videos')} videos against {len(first)} over "
                             f"{normal[0].get('num_videos')}): evaluate every seed on the same test shards")
    return RunScores(row["row"], [r["run"] for r in row["runs"]], first, [n["per_query"]["vtc"] for n in normal])


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(row: dict, cfg: AblationConfig, speed: dict | None = None) -> dict[str, Any]:
    """The numbers of one table row (ablation.json), means over the seeds found; ``speed``: the
    one-run benchmark of every recipe (load_speed_bench)."""
    runs = row["runs"]
    out: dict[str, Any] = {"run": row["row"], "runs": [r["run"] for r in runs], "missing": row["missing"],
                           "seeds": len(runs)}
    if not runs:
        return out
    first = runs[0]["cost"]
    tokens = first.get("tokens", {})
    out.update({"recipe": first.get("recipe"),
                "tokens_after_masking": tokens.get("video_tokens_visible"),
                "tokens_after_sparsification": tokens.get("video_tokens_final"),
                "gflop_per_clip": first["flops_per_clip"] / 1e9 if first.get("flops_per_clip") else None,
                "steps": first.get("steps")})
    for key, name in (("clips_per_s", "clips_per_s"), ("train_wall_s", "train_wall_s")):
        out[name] = mean_std([r["cost"].get(key) for r in runs])[0]
    timed = ((speed or {}).get("recipes") or {}).get(out["recipe"])
    out["clips_per_s_one_run"] = timed["clips_per_s"] if timed else None
    out["clips_per_s_one_run_vs_baseline"] = timed["clips_per_s_vs_baseline"] if timed else None
    for metric, name in (("R@1", "r1"), ("R@5", "r5"), ("R@10", "r10"), ("MdR", "mdr")):
        values = [r["retrieval"]["normal"]["vtc"]["t2v"][metric] for r in runs]
        out[name] = values
        out[f"{name}_mean"], out[f"{name}_std"] = mean_std(values)
    out["r1_ci95"] = recipe_interval(scores_of(row), cfg.bootstrap, cfg.seed)
    for name in ("vtc", "vtm"):
        key = "order_pair_acc" if name == "vtc" else "order_pair_acc_vtm"
        out[key] = mean_std([r["retrieval"]["normal"].get("order_pairs", {}).get(name) for r in runs])[0]
    for score in ("text", "video", "group"):   # Winoground's scores of the complete pairs (VTC)
        out[f"order_pair_{score}"] = mean_std([(r["retrieval"]["normal"].get("order_pairs", {}).get("pairs") or {})
                                               .get(score) for r in runs])[0]
    # off and on over the same seeds: a seed evaluated one way only would compare other draws
    paired = [r for r in runs if r["sparsify_off"]]
    off = [r["sparsify_off"]["normal"]["vtc"]["t2v"]["R@1"] for r in paired]
    out["r1_sparsify_off"], out["r1_sparsify_off_seeds"] = mean_std(off)[0], len(off)
    out["r1_sparsify_on_same_seeds"] = mean_std([r["retrieval"]["normal"]["vtc"]["t2v"]["R@1"] for r in paired])[0]
    notes = [vtm_status(r["cost"]) for r in runs]
    out["vtm"] = next((n for n in notes if n), "trained" if any(
        "vtm" in (r["cost"].get("final_losses") or {}) for r in runs) else "none")
    return out


def pm(mean: float | None, std: float | None, seeds: int, d: int) -> str:
    if mean is None:
        return DASH
    return f"{fmt(mean, d)} ± {fmt(std, d)}" if seeds > 1 else f"{fmt(mean, d)} (1 seed)"


def sparsify_off_cell(r: dict, d: int) -> str:
    """R@1 without test-time sparsification beside R@1 with it, over the same seeds."""
    if r["r1_sparsify_off"] is None:
        return DASH
    cell = f"{fmt(r['r1_sparsify_off'], d)} (on: {fmt(r['r1_sparsify_on_same_seeds'], d)}"
    if r["r1_sparsify_off_seeds"] < r["seeds"]:
        cell += f"; {r['r1_sparsify_off_seeds']} of {r['seeds']} seeds"
    return cell + ")"


def one_run_cell(r: dict) -> str:
    if r.get("clips_per_s_one_run") is None:
        return DASH
    return f"{fmt(r['clips_per_s_one_run'], 2)} ({r['clips_per_s_one_run_vs_baseline']:.2f}x)"


def ablation_table(rows: list[dict], cfg: AblationConfig, speed: dict | None = None) -> Table:
    d = cfg.decimals
    columns = ["Run", "Recipe", "Seeds", "Video tokens after masking", "after sparsification", "GFLOP / clip",
               "Clips / s", "Train wall (s)", "Clips / s, one run (x baseline)", "t2v R@1", "R@5", "R@10", "MdR", "R@1 95% CI",
               "Order-pair acc VTC / VTM", "Order pairs text / video / group", "R@1 sparsify off at test", "VTM"]
    table = Table("ablation", "Ablations and peers: cost against zero-shot retrieval (VTC ranking), "
                  "mean ± std over seeds", columns)
    for r in rows:
        if not r["runs"]:
            table.rows.append([r["run"]] + [DASH] * (len(columns) - 1))
            table.notes.append(f"{r['run']}: not run ({', '.join(r['missing'])}: no zero-shot retrieval in "
                               f"{' or '.join(cfg.eval_dirs)}; `dvc repro ablation/dvc.yaml`).")
            continue
        n = r["seeds"]
        ci = r["r1_ci95"]
        off = r["r1_sparsify_off"]
        table.rows.append([
            r["run"], r["recipe"] or DASH, str(n) if n > 1 else "1 (one seed)",
            fmt(r["tokens_after_masking"], d), fmt(r["tokens_after_sparsification"], d),
            fmt(r["gflop_per_clip"], 2), fmt(r["clips_per_s"], 2), fmt(r["train_wall_s"], 0), one_run_cell(r),
            pm(r["r1_mean"], r["r1_std"], n, d), pm(r["r5_mean"], r["r5_std"], n, d),
            pm(r["r10_mean"], r["r10_std"], n, d), pm(r["mdr_mean"], r["mdr_std"], n, 1),
            f"[{fmt(ci[0], d)}, {fmt(ci[1], d)}]",
            f"{fmt(r['order_pair_acc'], d)} / {fmt(r['order_pair_acc_vtm'], d)}",
            " / ".join(fmt(r[f"order_pair_{k}"], d) for k in ("text", "video", "group")),
            sparsify_off_cell(r, d),
            r["vtm"]])
        if r["missing"]:
            table.notes.append(f"{r['run']}: seeds not found, left out: {', '.join(r['missing'])}.")
        if n == 2:
            table.notes.append(f"{r['run']}: 2 seeds: their spread enters the interval as Student's t on 1 degree "
                               "of freedom, whose heavy tails make it wide and move its ends by a point or two "
                               "between bootstrap seeds; a third seed narrows it most.")
    table.notes += [
        "Mean ± sample std over the seeds found; '(1 seed)' marks rows trained once. R@1 95% CI: percentile "
        f"bootstrap ({cfg.bootstrap:,} resamples) of the test videos (each with all its captions), with, for rows "
        "with several seeds, the seeds' spread added as Student's t (eval/claim.py); a one-seed row's interval "
        "covers the choice of test videos only, not seed-to-seed variation.",
        "Order-pair acc: % of temporal-order pair clips whose own caption scores above the swapped one "
        "(chance 50). Order pairs text / video / group: Winoground's scores over the pairs with both "
        "clips in the test set, VTC (text: both clips prefer their own caption, chance 25; video: both "
        "captions prefer their own clip, 25; group: both, 16.7). A model that cannot tell a pair's two clips "
        "apart sits at exactly 50 per clip and at 0 on text. 'R@1 sparsify off': the same checkpoints evaluated with eval.retrieval.sparsify=false.",
        "mask-no-mvm separates MVM's effect from masking's: smaug's masking and sparsification without MVM.",
    ]
    if speed is None:
        table.notes.append(f"Clips / s, one run: {cfg.speed_bench} not found (`python -m train.ablation_bench`, "
                           "stage ablation-speed).")
    else:
        table.notes.append(
            f"Clips / s and Train wall: each training run's own, averaged over its seeds; runs made on different "
            f"days compare days as well as recipes. Clips / s, one run: every recipe timed in one run "
            f"({speed['timed_steps']} steps each after {speed['warmup_steps']} warm-up, {speed['schedule']}; "
            f"{speed['machine']['torch_threads']} threads), and its ratio to {speed['baseline']}'s: the column "
            f"to compare recipes' speed by ({cfg.speed_bench}).")
    return table


def signed(value: float, d: int) -> str:
    """``+1.2`` / ``-0.5``; a value that rounds to zero is ``+0.0``, never ``-0.0``."""
    return f"{round(value, d) + 0.0:+.{d}f}"


# How far the equal-time run's training time may stray from the candidate's before the table says
# the half compares unequal budgets. Its steps come from the candidate's wall time and dense's
# clips/s of another run; a machine that runs faster or slower on another day moves the two apart.
EQUAL_TIME_TOLERANCE = 0.10


def equal_time_budget(candidate: dict, other: dict, half: dict, candidate_name: str, other_name: str) -> str:
    """The note checking that 'equal time' was equal: mean training wall time of each, their ratio
    (also stored in the half as ``wall_ratio``), and a warning when it is off by more than the
    tolerance."""
    mine, theirs = candidate.get("train_wall_s"), other.get("train_wall_s")
    if not mine or not theirs:
        return f"equal time: no training wall time recorded for {candidate_name if not mine else other_name}; not checked."
    ratio = theirs / mine
    half["wall_ratio"] = ratio
    note = (f"equal time: {other_name} trained {theirs:.0f} s on average against {candidate_name}'s {mine:.0f} s "
            f"(ratio {ratio:.2f})")
    if abs(ratio - 1.0) > EQUAL_TIME_TOLERANCE:
        return (note + f": NOT equal time (off by more than {EQUAL_TIME_TOLERANCE:.0%}), so this half compares "
                "unequal budgets; rerun both on the same day (the equal-time steps come from two runs' rates).")
    return note + f", within {EQUAL_TIME_TOLERANCE:.0%}."


def claim_outputs(rows: dict[str, dict], cfg: AblationConfig) -> tuple[Table, dict]:
    d = cfg.decimals
    roles = (("candidate", cfg.candidate), ("equal_steps", cfg.equal_steps), ("equal_time", cfg.equal_time))
    missing = [run for _, run in roles if not rows[run]["runs"]]
    if missing:
        raise ValueError(f"the claim needs zero-shot retrieval of {', '.join(missing)}: run them "
                         f"(dvc repro, then dvc repro ablation/dvc.yaml)")
    scores = {run: scores_of(rows[run]) for _, run in roles}
    summary = {run: summarise(rows[run], cfg) for _, run in roles}
    halves = {
        "equal_steps": compare(scores[cfg.candidate], scores[cfg.equal_steps], -cfg.margin, cfg.bootstrap, cfg.seed),
        "equal_time": compare(scores[cfg.candidate], scores[cfg.equal_time], 0.0, cfg.bootstrap, cfg.seed),
    }
    num_videos = scores[cfg.candidate].num_videos
    data: dict[str, Any] = {
        # seeds behind the weakest-sampled recipe of the three (the verdict's limit), and each one's
        "seeds": min(len(scores[run].runs) for _, run in roles),
        "seeds_per_run": {run: len(scores[run].runs) for _, run in roles},
        "chance_r1": 100.0 / num_videos,
        "halves": halves,
        "rule": (f"95% interval of mean R@1 ({cfg.candidate}) - mean R@1 (other): {cfg.bootstrap:,} bootstrap "
                 "resamples of the test videos, each recipe's seed-to-seed spread added as Student's t "
                 f"(eval/claim.py): holds if it lies wholly above the threshold (-{cfg.margin} at equal "
                 f"steps, 0 at equal wall time), does not hold if wholly below, else cannot tell"),
    }
    for _, run in roles:
        s = summary[run]
        data[run.replace("-", "_")] = {
            "runs": s["runs"], "r1": s["r1"], "r1_mean": s["r1_mean"], "r1_std": s["r1_std"],
            "r1_ci95": s["r1_ci95"], "r10_mean": s["r10_mean"], "order_pair_acc": s["order_pair_acc"],
            "order_pair_group": s["order_pair_group"], "steps": s["steps"], "train_wall_s": s["train_wall_s"]}
    table = Table("claim", "The claim from intervals: SMAUG against dense at equal steps and at equal wall time "
                  "(zero-shot t2v R@1, VTC ranking)",
                  ["Half", "Comparison", "Seeds", "R@1 (mean)", "Difference", "95% CI of difference",
                   "Threshold", "Verdict"])
    for half, other, text in (("equal_steps", cfg.equal_steps, f"within {cfg.margin:g} points of {cfg.equal_steps}"),
                              ("equal_time", cfg.equal_time, f"above {cfg.equal_time}")):
        h = halves[half]
        table.rows.append([half.replace("_", " "), f"{cfg.candidate} {text}",
                           f"{h['seeds'][cfg.candidate]} vs {h['seeds'][other]}",
                           f"{fmt(summary[cfg.candidate]['r1_mean'], d)} vs {fmt(summary[other]['r1_mean'], d)}",
                           signed(h["difference"], d), f"[{signed(h['ci95'][0], d)}, {signed(h['ci95'][1], d)}]",
                           signed(h["threshold"], d), h["verdict"]])
        if "why" in h:
            table.notes.append(f"{half.replace('_', ' ')}: {h['verdict']}: {h['why']}.")
    table.notes.append(equal_time_budget(summary[cfg.candidate], summary[cfg.equal_time], halves["equal_time"],
                                         cfg.candidate, cfg.equal_time))
    table.notes.append(f"Rule: {data['rule']}.")
    table.notes.append(f"Chance R@1: {fmt(data['chance_r1'], d)} ({num_videos} test videos). Runs: "
                       + "; ".join(f"{run}: {', '.join(summary[run]['runs'])}" for _, run in roles) + ".")
    return table, data


def write_outputs(cfg: AblationConfig, params: dict, params_path, overrides: list[str]) -> list[Path]:
    rows = {row: load_row(cfg, row, params_path) for row in cfg.rows}
    speed = load_speed_bench(cfg, params_path)
    summaries = [summarise(rows[row], cfg, speed) for row in cfg.rows]
    claim_table, claim = claim_outputs(rows, cfg)
    stamp = provenance.stamp(params, ABLATION_KEYS, overrides=overrides)
    ablation = {"rows": summaries, "extra_seeds": list(cfg.extra_seeds), "seeded": list(cfg.seeded),
                "speed_bench": cfg.speed_bench if speed else None, provenance.FIELD: stamp}
    claim[provenance.FIELD] = stamp
    written = []
    for table, payload, name in ((ablation_table(summaries, cfg, speed), ablation, "ablation"), (claim_table, claim, "claim")):
        md = Path(cfg.out_dir) / f"{name}.md"
        js = Path(cfg.json_dir) / f"{name}.json"
        # one line to the provenance, as every table has (eval.tables); the runs and params hash live in the JSON
        text_md = table.markdown() + f"\nProvenance: the runs read and the params hash are in `{js.as_posix()}`.\n"
        for path, text in ((md, text_md), (js, json.dumps(payload, indent=2, sort_keys=True) + "\n")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.ablation", description=__doc__.split("\n\n")[0])
    cli.add_config_arguments(p)
    args = cli.parse(p, argv)
    params = load_params(args.params, overrides=args.overrides)
    cfg = section(params, AblationConfig, "ablation")
    if args.print_config:
        return cli.print_config(params)
    return cli.print_written(lambda: write_outputs(cfg, params, args.params, args.overrides))


if __name__ == "__main__":
    sys.exit(main())
