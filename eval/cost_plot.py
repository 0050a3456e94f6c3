"""The cost-against-accuracy picture the tables stage draws: ``results/plots/cost_vs_accuracy.png``.

One point per pre-training run (recipe and seed): x = its cost in device-hours (core-hours on the
CPU, GPU-hours on GPUs; eval.tables.device_hours), y = zero-shot text-to-video R@1 by VTC ranking
(the headline). Runs of one setting over several seeds (``<run>``, ``<run>-seed<k>``) also get
their mean with error bars (sample std of cost and of R@1). Reads the default pipeline's files
(``tables.metrics_dir``, ``tables.eval_dir``; the runs of ``tables.runs``) and, where they exist, the ablation runs'
(``tables.ablation_dir``/metrics and /eval); each input must carry the current params' hash,
as for the tables (pipeline/provenance.py).
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from eval.config import TablesConfig
from pipeline import provenance

SEED_SUFFIX = re.compile(r"-seed\d+$")


def run_points(cfg: TablesConfig, params_path, check: bool = True) -> list[dict]:
    """(run, setting, hours, unit, r1) of every run with both a cost file and a zero-shot retrieval."""
    from eval.tables import device_hours, headline_scores, read_json

    from eval.tables import pretrain_files

    roots = [(Path(cfg.metrics_dir), Path(cfg.eval_dir), pretrain_files(cfg))]  # tables.runs only
    if cfg.ablation_dir:
        ablation = Path(cfg.ablation_dir)
        roots.append((ablation / "metrics", ablation / "eval", sorted((ablation / "metrics").glob("pretrain-*.json"))))
    points, seen = [], set()
    for metrics_dir, eval_dir, cost_files in roots:
        for cost_file in cost_files:
            run = cost_file.stem[len("pretrain-"):]
            cost, result = read_json(cost_file), read_json(eval_dir / f"{run}.json")
            retrieval = ((result or {}).get("zero_shot") or {}).get("retrieval")
            if run in seen or cost is None or retrieval is None:
                continue  # a run found in the default pipeline is not counted again
            if check:
                provenance.check(cost, cost_file, params_path)
                provenance.check(result, eval_dir / f"{run}.json", params_path)
            hours = device_hours(cost)
            if hours is None:
                continue
            seen.add(run)
            points.append({"run": run, "setting": SEED_SUFFIX.sub("", run), "hours": hours,
                           "unit": "GPU-hours" if str(cost.get("device", "")).startswith("cuda") else "core-hours",
                           "r1": headline_scores(retrieval)["t2v"]["R@1"]})
    return points


def plot_cost_vs_accuracy(cfg: TablesConfig, params_path=None, *, check: bool = True) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = run_points(cfg, params_path, check)
    out = Path(cfg.cost_plot)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    settings = sorted({p["setting"] for p in points})
    colours = plt.get_cmap("tab10")
    for i, setting in enumerate(settings):
        mine = [p for p in points if p["setting"] == setting]
        xs, ys = [p["hours"] for p in mine], [p["r1"] for p in mine]
        colour = colours(i % 10)
        ax.scatter(xs, ys, color=colour, alpha=0.55 if len(mine) > 1 else 1.0, s=28,
                   label=f"{setting} ({len(mine)} seed{'s' if len(mine) > 1 else ''})")
        if len(mine) > 1:  # mean with error bars: the spread over seeds
            ax.errorbar(statistics.mean(xs), statistics.mean(ys), xerr=statistics.stdev(xs),
                        yerr=statistics.stdev(ys), color=colour, fmt="D", markersize=7, capsize=4)
        ax.annotate(setting, (statistics.mean(xs), statistics.mean(ys)), textcoords="offset points",
                    xytext=(6, 5), fontsize=8, color=colour)
    units = sorted({p["unit"] for p in points})
    ax.set_xlabel(f"pre-training cost ({units[0] if len(units) == 1 else 'core-hours on CPU, GPU-hours on GPU'})")
    ax.set_ylabel("zero-shot text-to-video R@1 (%, VTC)")
    ax.set_title("Pre-training cost against zero-shot retrieval, one point per run")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(fontsize=8, loc="best")
        ax.set_xlim(0, 1.2 * max(p["hours"] for p in points))  # room for the labels on the right
    else:
        ax.text(0.5, 0.5, f"no run has both a pretrain-<run>.json in {cfg.metrics_dir}\n"
                f"and a zero-shot retrieval in {cfg.eval_dir}", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    # no timestamp or version in the file: the same inputs give the same bytes
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out
