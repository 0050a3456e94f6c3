"""Video-only against image + video pre-training at equal steps: ``python -m eval.images_study``.

The peers pre-train on image-caption sets (CC3M, often COCO, CC12M) beside WebVid, and VindLU's
recipe study ranks joint image + video training among the most important factors. This study
asks the same of SMAUG on the built-in benchmark: the main pipeline's smaug run (video only,
``pretrain.shards``) against the ``smaug-images`` recipe (the same settings, the still-image set
mixed in by weight through ``pretrain.sources``), both for ``pretrain.steps``, both evaluated
zero-shot on the same test videos.

Each arm is run with the top-level seed and with each of ``ablation.extra_seeds`` (runs
``<run>-seed<k>``: the video-only arm's are the ablation's ``smaug-seed<k>`` in
``results/ablation``, the image + video arm's are trained by the study); a seed not found is
left out and named. Reads the runs' zero-shot evaluations (``<run>.json`` of eval.evaluate) and
pre-training metrics (``pretrain-<run>.json``) and writes:

* ``results/tables/images_vs_video.md``: per run the samples each source gave, t2v R@1 with its
  95% bootstrap interval, R@5, R@10, MdR, VTM re-ranking and order-pair accuracy; per arm R@1 as
  mean ± std over its seeds with its interval (the test videos resampled, the seeds' spread added
  as Student's t); and the difference in mean R@1 (image + video - video only) with its interval
  (eval/claim.py's rule, against 0);
* ``results/metrics/images_vs_video.json``: the same numbers, for ``dvc metrics``.

Before it renders anything it refuses inputs the current params did not make
(pipeline/provenance.py) and arms whose resolved settings differ in anything but the data
(``pretrain.shards`` / ``pretrain.sources``) or in the steps trained. The stages are in
``studies/images/dvc.yaml`` (``dvc repro studies/images/dvc.yaml``): only the image + video arm
trains, the video-only arm is the main pipeline's and the ablation's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eval.ablation import mean_std, signed
from eval.claim import RunScores, compare, recipe_interval
from eval.tables import DASH, RETRIEVAL_CELLS, Table, fmt, read_json, retrieval_cells, vtm_status
from pipeline import cli, provenance
from pipeline.config import ConfigError, load_params, section, to_dict

VIDEO_ONLY = "smaug"  # the main pipeline's run (dvc.yaml stage pretrain-smaug, eval)
MIXED = "smaug-images"  # pipeline/recipes/smaug-images.yaml, trained by studies/images/dvc.yaml
STUDY_DIR = "results/studies/images"
DATA_KEYS = ("shards", "sources")  # the only pretrain keys the arms may differ in
STUDY_KEYS = ("seed", "eval.seed", "eval.bootstrap", "tables.decimals", "ablation.extra_seeds")


def differences_but_data(params_path, video_only: str, mixed: str) -> list[str]:
    """Settings (resolved, recipe applied) in which the two arms differ, data keys aside."""
    from train.config import PretrainConfig
    from train.data import LoaderConfig
    from train.model import ModelConfig

    def resolved(recipe: str) -> dict[str, Any]:
        params = load_params(params_path, recipe=recipe)
        pre = to_dict(section(params, PretrainConfig, "pretrain"))
        for key in DATA_KEYS:
            pre.pop(key)
        return {"seed": params.get("seed"), "pretrain": pre, "model": to_dict(section(params, ModelConfig, "model")),
                "loader": to_dict(section(params, LoaderConfig, "loader"))}

    a, b = resolved(video_only), resolved(mixed)
    out = []
    for name in a:
        if a[name] != b[name]:
            keys = sorted(k for k in a[name] if a[name][k] != b[name].get(k)) if isinstance(a[name], dict) else []
            out += [f"{name}.{k}" for k in keys] or [name]
    return out


def load_arm(run: str, eval_dir: Path, metrics_dir: Path, params_path, check: bool) -> dict[str, Any]:
    files = {"eval": eval_dir / f"{run}.json", "pretrain": metrics_dir / f"pretrain-{run}.json"}
    data = {}
    for what, path in files.items():
        data[what] = read_json(path)
        if data[what] is None:
            raise ValueError(f"{path}: missing ({run}'s {what}; dvc repro, then dvc repro studies/images/dvc.yaml)")
        if check:
            provenance.check(data[what], path, params_path)
    retrieval = data["eval"].get("zero_shot", {}).get("retrieval")
    if retrieval is None or "per_query" not in retrieval.get("normal", {}):
        raise ValueError(f"{files['eval']}: no zero-shot retrieval with per-query ranks; rerun eval.evaluate")
    cost = data["pretrain"]
    counts = cost.get("samples_per_source") or {"shards": cost["steps"] * cost["clips_per_step"]}
    sources = cost.get("sources") or [{"name": "shards", "weight": 1.0}]
    order = [s["name"] for s in sources]  # the metrics file sorts its keys: show the run's order
    counts = dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return {"run": run, "files": {k: p.as_posix() for k, p in files.items()}, "retrieval": retrieval,
            "cost": cost, "steps": cost["steps"], "samples_per_source": counts, "sources": sources}


def load_seeds(run: str, first: tuple[Path, Path], seeds_dirs: tuple[Path, Path], extra_seeds, params_path,
               check: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The arm's run with the top-level seed (required) and ``<run>-seed<k>`` for each extra seed
    (left out, and named, when its files are not there)."""
    arms, missing = [load_arm(run, *first, params_path, check)], []
    for k in extra_seeds:
        name = f"{run}-seed{k}"
        if not ((seeds_dirs[0] / f"{name}.json").is_file() and (seeds_dirs[1] / f"pretrain-{name}.json").is_file()):
            missing.append(name)
            continue
        arms.append(load_arm(name, *seeds_dirs, params_path, check))
    return arms, missing


def scores(label: str, runs: list[dict]) -> RunScores:
    normal = [arm["retrieval"]["normal"] for arm in runs]
    return RunScores(label, [arm["run"] for arm in runs], normal[0]["per_query"]["video"],
                     [n["per_query"]["vtc"] for n in normal])


def counts_cell(arm: dict) -> str:
    total = sum(arm["samples_per_source"].values()) or 1
    return ", ".join(f"{n} {c} ({100.0 * c / total:.0f}%)" for n, c in arm["samples_per_source"].items())


def study(params: dict, params_path, *, video_only: str, mixed: str, eval_dirs: tuple[Path, Path],
          metrics_dirs: tuple[Path, Path], seeds_dirs: tuple[tuple[Path, Path], tuple[Path, Path]] | None = None,
          check: bool = True) -> tuple[Table, dict]:
    differ = differences_but_data(params_path, video_only, mixed)
    if differ:
        raise ConfigError(f"recipe {mixed}: differs from {video_only} in {', '.join(differ)}, not only in the "
                          "data (pretrain.shards / pretrain.sources): the study compares data alone")
    extra = list((params.get("ablation") or {}).get("extra_seeds") or [])
    seeds_dirs = seeds_dirs or ((eval_dirs[0], metrics_dirs[0]), (eval_dirs[1], metrics_dirs[1]))
    arms, missing = {}, []
    for label, run, first, more in (("video only", video_only, (eval_dirs[0], metrics_dirs[0]), seeds_dirs[0]),
                                    ("image + video", mixed, (eval_dirs[1], metrics_dirs[1]), seeds_dirs[1])):
        arms[label], lost = load_seeds(run, first, more, extra, params_path, check)
        missing += lost
    steps = {arm["run"]: arm["steps"] for runs in arms.values() for arm in runs}
    if len(set(steps.values())) > 1:
        raise ValueError("the runs trained " + ", ".join(f"{r}: {n}" for r, n in steps.items())
                         + " steps; the study is at equal steps")
    d = params["tables"]["decimals"]
    resamples = params["eval"]["bootstrap"] or 1000
    seed = params["eval"]["seed"] if params["eval"]["seed"] is not None else params["seed"]
    arm_scores = {label: scores(label, runs) for label, runs in arms.items()}
    diff = compare(arm_scores["image + video"], arm_scores["video only"], 0.0, resamples, seed)
    table = Table("images_vs_video", "Video-only against image + video pre-training at equal steps "
                  "(zero-shot t2v retrieval, VTC ranking; smaug settings)",
                  ["Arm", "Run", "Steps", "Samples per source"] + list(RETRIEVAL_CELLS))
    summary = {}
    for label, runs in arms.items():
        for arm in runs:
            table.rows.append([label, arm["run"], str(arm["steps"]), counts_cell(arm)]
                              + retrieval_cells(arm["retrieval"], vtm_status(arm["cost"]), d))
        t2v = [arm["retrieval"]["normal"]["vtc"]["t2v"] for arm in runs]
        pairs = [(arm["retrieval"]["normal"].get("order_pairs") or {}).get("vtc") for arm in runs]
        r1_mean, r1_std = mean_std([t["R@1"] for t in t2v])
        ci = recipe_interval(arm_scores[label], resamples, seed)
        summary[label] = {
            "runs": [arm["run"] for arm in runs], "seeds": len(runs), "r1": [t["R@1"] for t in t2v],
            "r1_mean": r1_mean, "r1_std": r1_std, "r1_ci95": ci, "r10_mean": mean_std([t["R@10"] for t in t2v])[0],
            "order_pair_acc": mean_std(pairs)[0] if None not in pairs else None,
            "samples_per_source": runs[0]["samples_per_source"], "sources": runs[0]["sources"],
            "files": [p for arm in runs for p in arm["files"].values()]}
        if len(runs) > 1:
            table.rows.append([f"{label}, mean of {len(runs)} seeds", DASH, str(runs[0]["steps"]), DASH,
                               f"{fmt(r1_mean, d)} ± {fmt(r1_std, d)}", f"[{fmt(ci[0], d)}, {fmt(ci[1], d)}]",
                               DASH, fmt(summary[label]["r10_mean"], d), DASH, DASH,
                               fmt(summary[label]["order_pair_acc"], d)])
    ci = diff["ci95"]
    arms_seen = [arm for runs in arms.values() for arm in runs]
    table.notes += [
        f"R@1 difference (image + video - video only, means over seeds): {signed(diff['difference'], d)} points, 95% "
        f"interval [{signed(ci[0], d)}, {signed(ci[1], d)}], the test videos resampled and the seeds' spread added "
        f"as Student's t (eval/claim.py): "
        f"images help: {diff['verdict']}" + (f" ({diff['why']})." if "why" in diff else "."),
        "Sources: " + "; ".join(f"{label}: " + ", ".join(
            f"{s['name']} weight {s['weight']:g}" for s in summary[label]["sources"]) for label in arms)
        + ". One source per batch, drawn by weight (train/sources.py); an image is a clip of one repeated frame.",
        "R@1 95% CI: bootstrap over the test videos (eval.evaluate) for a run; for an arm's mean, over the "
        "test videos with the seeds' spread added as Student's t. Order-pair acc: % of temporal-order pair clips whose own caption scores above the "
        "swapped one (chance 50); still images carry no order, so this column shows what the video share "
        "given up costs.",
        f"Inputs: {', '.join(p for arm in arms_seen for p in arm['files'].values())}.",
    ]
    if missing:
        table.notes.append(f"Seeds not found, left out: {', '.join(missing)} (dvc repro ablation/dvc.yaml, "
                           "dvc repro studies/images/dvc.yaml).")
    data = {
        "steps": arms_seen[0]["steps"], "seeds": min(len(runs) for runs in arms.values()), "missing": missing,
        "r1_difference": diff["difference"], "r1_difference_ci95": ci, "images_help": diff["verdict"],
        "video_only": summary["video only"], "image_video": summary["image + video"],
    }
    return table, data


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.images_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--video-only", default=VIDEO_ONLY, metavar="RUN", help=f"the video-only run (default {VIDEO_ONLY})")
    p.add_argument("--mixed", default=MIXED, metavar="RECIPE",
                   help=f"the image + video recipe, also its run name (default {MIXED})")
    p.add_argument("--video-only-dir", default="results", metavar="DIR",
                   help="results folder of the video-only run: DIR/eval/, DIR/metrics/ (default results)")
    p.add_argument("--mixed-dir", default=STUDY_DIR, metavar="DIR",
                   help=f"results folder of the image + video run and its seeds (default {STUDY_DIR})")
    p.add_argument("--video-only-seeds-dir", default="results/ablation", metavar="DIR",
                   help="results folder of the video-only run's other seeds, <run>-seed<k> (default results/ablation)")
    p.add_argument("--out", default="results/tables/images_vs_video.md", metavar="MD")
    p.add_argument("--json", default="results/metrics/images_vs_video.json", metavar="JSON")
    p.add_argument("--no-check", action="store_true",
                   help="render inputs made by other params than --params too (not for committed tables)")
    cli.add_config_arguments(p)
    args = cli.parse(p, argv)
    params = load_params(args.params, overrides=args.overrides)
    if args.print_config:
        return cli.print_config(params)

    def write() -> list[Path]:
        v, m, vs = Path(args.video_only_dir), Path(args.mixed_dir), Path(args.video_only_seeds_dir)
        table, data = study(params, args.params, video_only=args.video_only, mixed=args.mixed,
                            eval_dirs=(v / "eval", m / "eval"), metrics_dirs=(v / "metrics", m / "metrics"),
                            seeds_dirs=((vs / "eval", vs / "metrics"), (m / "eval", m / "metrics")),
                            check=not args.no_check)
        data[provenance.FIELD] = provenance.stamp(params, STUDY_KEYS, overrides=args.overrides)
        md, js = Path(args.out), Path(args.json)
        for path, text in ((md, table.markdown() + f"\nProvenance: the runs read and the params hash are in "
                            f"`{js.as_posix()}`.\n"), (js, json.dumps(data, indent=2, sort_keys=True) + "\n")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        print(table.markdown(), flush=True)
        return [md, js]

    return cli.print_written(write)


if __name__ == "__main__":
    sys.exit(main())
