"""The paper's tables, from the metrics files: ``python -m eval.tables [--params params.yaml]``.

Reads ``results/eval/<recipe>.json`` (eval.evaluate), ``results/metrics/pretrain-<recipe>.json``
(train.pretrain's cost accounting) and ``results/bench/pretrain.json`` (train.bench) and writes,
each as Markdown and CSV under ``results/tables/``:

* ``retrieval``  text-to-video retrieval, rows = methods / recipes, columns = dataset x
  (R@1, R@5, R@10, MdR);
* ``qa``         open-ended QA and multiple-choice accuracy per dataset, plus accuracy per
  answer type (``qa_per_type``);
* ``efficiency`` pre-training cost (steps, clips, core- or GPU-hours, FLOPs, clips/s, the
  paper-scale GPU-hour projection) against accuracy;
* ``temporal``   HiTeA's shuffle test: each score with frames in order, shuffled, and the drop,
  for the order-dependent queries apart from the rest, and order-pair accuracy;
* ``ensembles``  test-time frame ensembles (eval/ensemble.py) against the training frame count;

and ``provenance.json`` (per recipe its checkpoints with sha256 and the full params, and the
params hash of every input) with a short ``provenance.md``: each Markdown table ends with one
line pointing there instead of the params. The cost plot (``tables.cost_plot``, eval/cost_plot.py)
is drawn here too.

The paper's claim and the ablation table need several seeds and recipes, which the default
pipeline does not train: ``python -m eval.ablation`` writes them (ablation/dvc.yaml).
``tables.runs`` names the runs shown: the default stage shows smaug, the one it trains;
ablation/dvc.yaml's ``tables-paper`` renders the same tables with dense and dense at smaug's
wall time beside it into ``results/tables/paper/``.
Before rendering, every input must carry the params hash of the keys its stage reads, equal to
the current params' (pipeline/provenance.py); otherwise the program stops naming the file.

Rows are marked ``measured`` (this repository's checkpoints, named with path + sha256 of
model.safetensors in the CSV columns and in provenance.md) or ``reported``
(published figures, with their source). Each dataset is its own column, so figures on the
built-in synthetic benchmark never share a column with the real benchmarks. The output is a
pure function of the input files: no timestamps, fixed float formatting, sorted rows, so the
same checkpoints and params give byte-identical tables.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.config import ENSEMBLE_MODES, EVAL_TASKS, EvalConfig, TablesConfig
from pipeline import cli, provenance
from pipeline.config import load_params, section

DASH = "–"
PROVENANCE_POINTER = ("Provenance: the checkpoints (path, step, sha256) and params behind the measured rows are in "
                      "[provenance.md](provenance.md) and `provenance.json` beside this table.")

# Published figures (fine-tuned). Source: docs FACTS, "Published reference figures".
MSRVTT = "MSRVTT (1k-A)"
MSRVTT_QA = "MSRVTT-QA"
REAL_QA_DATASETS = ("MSRVTT-QA", "MSVD-QA", "TGIF Action", "TGIF Transition", "TGIF FrameQA")
REPORTED = [
    # method, source, pre-training note, MSRVTT t2v R@1, MSRVTT-QA accuracy
    ("ClipBERT", "Lei et al., CVPR 2021", "", 22.0, 37.4),
    ("Frozen", "Bain et al., ICCV 2021", "", 31.0, None),
    ("ALPRO", "Li et al., CVPR 2022", "", 33.9, 42.1),
    ("Singularity", "Lei et al., ACL 2023", "5M", 36.8, 42.7),
    ("EmpiricalMVM", "Fu et al., CVPR 2023", "", 37.2, 44.5),
    ("MAC", "Shu et al., 2022", "", 38.9, None),
    ("VindLU", "Cheng et al., CVPR 2023", "5M", 43.8, 43.6),
    ("SimVTP", "Ma et al., 2022", "Kinetics init", 53.6, None),
]


@dataclass
class Table:
    """A table as rows of cells; rendered to Markdown and CSV the same way every time."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)  # checkpoints behind the rows (provenance.md)

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        for row in self.rows:
            out.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
        if not self.rows:
            out.append("| " + " | ".join([DASH] * len(self.columns)) + " |")
        if self.notes:
            out += ["", "Notes:", ""] + [f"- {n}" for n in self.notes]
        if self.provenance:
            # the checkpoints and params behind the rows fill a page; people come for the numbers
            out += ["", PROVENANCE_POINTER]
        return "\n".join(out) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows(self.rows)
        return buf.getvalue()


def fmt(value: Any, decimals: int) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def params_digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def load_eval_metrics(eval_dir: Path, runs: list[str] | None = None) -> list[dict]:
    """The <run>.json of eval.evaluate for each of ``runs`` (None: every one found), sorted by run."""
    if runs is None:
        paths = sorted(eval_dir.glob("*.json"))
    else:
        paths = [eval_dir / f"{run}.json" for run in sorted(runs)]
        missing = [p.as_posix() for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"tables.runs: no evaluation {', '.join(missing)} "
                                    "(run `python -m eval.evaluate --recipe RUN`, or drop the run from tables.runs)")
    out = []
    for path in paths:
        data = read_json(path)
        if not isinstance(data, dict) or "recipe" not in data:
            raise ValueError(f"{path}: not an eval metrics file (no 'recipe')")
        if data.get("pending"):  # eval.evaluate stopped before the end: not a table's input
            raise ValueError(f"{path}: unfinished evaluation (still pending: {', '.join(data['pending'])}); "
                             "rerun python -m eval.evaluate")
        data["_file"] = path.as_posix()
        out.append(data)
    return out


def pretrain_files(cfg: TablesConfig) -> list[Path]:
    """The pre-training metrics files the tables read: those of ``tables.runs`` that exist (a run
    evaluated without one gets dashes), or every pretrain-<run>.json when runs is null."""
    metrics_dir = Path(cfg.metrics_dir)
    if cfg.runs is None:
        return sorted(metrics_dir.glob("pretrain-*.json"))
    return [p for p in (metrics_dir / f"pretrain-{run}.json" for run in sorted(cfg.runs)) if p.is_file()]


def headline_scores(retrieval: dict) -> dict:
    """The headline ranking is VTC; VTM re-ranking is reported beside it, not in its place
    (a VTM head that has not learnt would otherwise decide the headline)."""
    return retrieval["normal"]["vtc"]


# VTM sees 1 positive to 2 negatives per clip: a head that has learnt nothing predicts 1/3 and
# its binary cross-entropy is the entropy of that prior, H(1/3) = 0.6365 nats.
VTM_PRIOR_LOSS = -(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3)
VTM_TRAINED_BELOW = 0.95  # a final VTM loss under this share of the prior counts as trained


def vtm_status(pretrain_cost: dict | None) -> str | None:
    """"VTM not trained (loss L vs prior P)" when the run's final VTM loss is not clearly below
    the prior; None when it is, or when the run has no VTM loss to judge."""
    loss = ((pretrain_cost or {}).get("final_losses") or {}).get("vtm")
    if loss is None or loss < VTM_TRAINED_BELOW * VTM_PRIOR_LOSS:
        return None
    return f"VTM not trained (loss {loss:.3f} vs prior {VTM_PRIOR_LOSS:.3f})"


def finetune_vtm_status(cfg: TablesConfig, recipe: str) -> str | None:
    """vtm_status for a retrieval fine-tuning, from its loss curve: train.finetune writes it to
    <pretrain.results_dir>/plots/finetune/<recipe>-retrieval.csv, and pre-training's cost files
    (tables.metrics_dir) lie in <pretrain.results_dir>/metrics, so the curve is found beside them.
    The loss is averaged over the last tenth of the steps, at least 4 (a fine-tuning is short)."""
    path = Path(cfg.metrics_dir).parent / "plots" / "finetune" / f"{recipe}-retrieval.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = [float(r["loss_vtm"]) for r in csv.DictReader(f) if r.get("loss_vtm") not in (None, "", "nan")]
    if not rows:
        return None
    tail = rows[-max(4, len(rows) // 10):]
    return vtm_status({"final_losses": {"vtm": sum(tail) / len(tail)}})


def setting_label(setting: str, metrics: dict, data: dict, task: str) -> str:
    rerank = data["params"]["eval"]["retrieval"]["rerank_k"]
    # False for results older than the setting (09f5330): they were re-ranked by the VTM logit alone
    add_vtc = data["params"]["eval"]["retrieval"].get("rerank_add_vtc", False)
    frames = metrics.get("frames")
    parts = ["zero-shot" if setting == "zero_shot" else "fine-tuned"]
    if task == "retrieval":
        parts.append("VTC ranking" + (f" (VTM{'+VTC'if add_vtc else ''} top-{rerank} beside)"
                                      if "vtm" in metrics["normal"] else ""))
        if data["params"]["eval"]["retrieval"].get("sparsify") is False:
            parts.append("no sparsification at test")
    if task == "qa" and "candidates" in metrics["normal"]:
        parts.append(f"MLM head over {metrics['normal']['candidates']} answers")
    if frames:
        # results older than eval.view (2026-12-05) were evaluated on the centre square
        view = data["params"]["eval"].get("view", "centre")
        parts.append(f"{frames} frames" + (", whole frame" if view == "whole" else ", centre square"))
    if "frames_ensemble" in metrics:
        parts.append(f"frame ensemble: {metrics['frames_ensemble']['label']}")
    return ", ".join(parts)


def checkpoint_key(setting: str, task: str) -> str:
    return "pretrain" if setting == "zero_shot" else f"finetune_{task}"


def provenance_lines(evals: list[dict]) -> list[str]:
    """One line per checkpoint and per params set: what provenance.md lists (the full params are
    in provenance.json)."""
    lines = []
    for data in evals:
        for name, ck in sorted(data.get("checkpoints", {}).items()):
            lines.append(f"{data['recipe']} {name}: `{ck['path']}` (step {ck.get('step')}) "
                         f"sha256 `{ck['sha256']}`")
        lines.append(f"{data['recipe']} eval + finetune params: sha256 {params_digest(data['params'])}")
    return lines


def provenance_record(cfg: TablesConfig, evals: list[dict]) -> dict:
    """Everything the tables were made from: per recipe its checkpoints and params (with their
    digest) and every input file with its params hash (pipeline/provenance.py)."""
    runs = {}
    for data in evals:
        runs[data["recipe"]] = {"eval_file": data["_file"], "checkpoints": data.get("checkpoints", {}),
                                "params": data["params"], "params_sha256": params_digest(data["params"]),
                                provenance.FIELD: data.get(provenance.FIELD)}
    inputs = {}
    for path in pretrain_files(cfg) + [Path(cfg.bench)]:
        data = read_json(path)
        if data is not None:
            inputs[path.as_posix()] = {provenance.FIELD: data.get(provenance.FIELD)}
    return {"runs": runs, "inputs": inputs}


def provenance_markdown(record: dict, tables: list["Table"]) -> str:
    out = ["# Provenance of the tables", "",
           "The checkpoints and params behind the measured rows of "
           + ", ".join(f"`{t.name}.md`" for t in tables if t.provenance)
           + ". The full params (and each input's params hash) are in `provenance.json`.", ""]
    for recipe, run in sorted(record["runs"].items()):
        out.append(f"## {recipe}")
        out.append("")
        for name, ck in sorted(run["checkpoints"].items()):
            out.append(f"- {name}: `{ck['path']}` (step {ck.get('step')}) sha256 `{ck['sha256']}`")
        out.append(f"- eval + finetune params: sha256 {run['params_sha256']} (from `{run['eval_file']}`)")
        out.append("")
    if record["inputs"]:
        out += ["## Other inputs", ""]
        for path, info in sorted(record["inputs"].items()):
            stamp = info.get(provenance.FIELD) or {}
            out.append(f"- `{path}`: params hash {stamp.get('sha256', 'none recorded')}")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- retrieval


def reported_gate(evals: list[dict], dataset: str) -> str | None:
    """None when published figures on ``dataset`` may stand beside ours: no measured row of ours
    on it, or one evaluated with a preset whose protocol card matched; else why they are withheld
    (the differing card fields)."""
    ours = [e for e in evals for s in ("zero_shot", "finetuned") for m in e.get(s, {}).values()
            if m.get("dataset") == dataset]
    if not ours:
        return None
    protocols = [e["protocol"] for e in ours if e.get("protocol", {}).get("dataset") == dataset]
    if any(p["matched"] for p in protocols):
        return None
    if not protocols:
        return "withheld: no protocol card check (evaluate with --preset)"
    return "withheld: card differs in " + ", ".join(sorted({f for p in protocols for f in p["mismatches"]}))


def chance_retrieval_cells(num_videos: int, decimals: int) -> list[str]:
    """R@1, R@5, R@10 and MdR of a random ranking of ``num_videos``: R@K = K/N, MdR = (N+1)/2."""
    n = num_videos
    return [fmt(100.0 * min(k, n) / n, decimals) for k in (1, 5, 10)] + [fmt((n + 1) / 2, 1)]


RETRIEVAL_CELLS = ("R@1", "R@1 95% CI", "R@5", "R@10", "MdR", "VTM re-rank R@1", "Order-pair acc VTC / VTM")


def ci_cell(t2v: dict, metric: str, decimals: int) -> str:
    ci = t2v.get(f"{metric}_ci95")
    return f"[{fmt(ci[0], decimals)}, {fmt(ci[1], decimals)}]" if ci else DASH


def order_pair_cell(normal: dict, decimals: int) -> str:
    pairs = normal.get("order_pairs")
    if not pairs:
        return DASH
    cell = " / ".join(fmt(pairs.get(k), decimals) for k in ("vtc", "vtm"))
    whole = pairs.get("pairs")
    if whole:   # the Winoground scores of the complete pairs (VTC): text / group
        cell += f" (pairs: text {fmt(whole['text'], decimals)}, group {fmt(whole['group'], decimals)})"
    return cell


def retrieval_cells(metrics: dict, vtm_note: str | None, decimals: int) -> list[str]:
    """The cells of RETRIEVAL_CELLS for one evaluation (VTC headline, VTM beside)."""
    normal, t2v = metrics["normal"], headline_scores(metrics)["t2v"]
    vtm = normal.get("vtm")
    vtm_cell = fmt(vtm["t2v"]["R@1"], decimals) if vtm else DASH
    if vtm and vtm_note:
        vtm_cell += f" ({vtm_note})"
    return ([fmt(t2v["R@1"], decimals), ci_cell(t2v, "R@1", decimals)]
            + [fmt(t2v[m], decimals) for m in ("R@5", "R@10", "MdR")] + [vtm_cell, order_pair_cell(normal, decimals)])


def finetuning_gain(evals: list[dict], decimals: int) -> list[str]:
    """For each recipe with zero-shot and fine-tuned retrieval on the same test set: the change
    fine-tuning makes to t2v R@1, with a paired bootstrap interval over the test videos (both
    rankings of a resample use the same videos, so the video-to-video spread cancels). One
    pre-training seed: the interval says nothing of seed-to-seed variation."""
    from eval.claim import RunScores, compare

    notes = []
    for e in evals:
        zs, ft = (e.get(s, {}).get("retrieval") for s in ("zero_shot", "finetuned"))
        if not zs or not ft or zs["dataset"] != ft["dataset"]:
            continue
        queries = [m["normal"].get("per_query") for m in (zs, ft)]
        if not all(q and "vtc" in q for q in queries) or queries[0]["video"] != queries[1]["video"]:
            continue
        scores = [RunScores(f"{e['recipe']} {name}", [name], q["video"], [q["vtc"]])
                  for name, q in zip(("zero-shot", "fine-tuned"), queries)]
        gain = compare(scores[1], scores[0], threshold=0.0, resamples=1000, seed=0)
        verdict = {"holds": "fine-tuning raises R@1", "does not hold": "fine-tuning lowers R@1",
                   "cannot tell": "cannot tell: the interval spans 0"}[gain["verdict"]]
        low, high = gain["ci95"]
        notes.append(f"{e['recipe']}: fine-tuned minus zero-shot t2v R@1 on {zs['dataset']}: "
                     f"{gain['difference']:+.{decimals}f} [{low:+.{decimals}f}, {high:+.{decimals}f}], {verdict} "
                     f"(paired bootstrap over the same test videos, 1000 resamples; one pre-training seed).")
    return notes


def skipped_notes(evals: list[dict], tasks: tuple[str, ...]) -> list[str]:
    """A note for each evaluation that left out test samples it could not read (eval/evaluate.py
    ``skipped_samples``), so a number over fewer clips than the test set holds says so."""
    notes = []
    for e in evals:
        for setting in ("zero_shot", "finetuned"):
            for task, m in sorted(e.get(setting, {}).items()):
                if task in tasks and m.get("skipped_samples"):
                    first = ", ".join(f"{k} ({r})" for k, r in m.get("skipped_keys", [])[:3])
                    notes.append(f"{e['recipe']}, {setting.replace('_', '-')} {task} on {m.get('dataset')}: "
                                 f"{m['skipped_samples']} test sample(s) could not be read and are not in "
                                 f"these numbers (first: {first}).")
                if task in tasks and m.get("test_set"):
                    notes.append(test_set_note(e["recipe"], setting, task, m))
    return notes


def test_set_note(recipe: str, setting: str, task: str, m: dict) -> str:
    """What eval/evaluate.py's ``test_set`` says is missing: videos preprocessing wrote that no
    batch held (a shard cut short), and annotated videos that failed preprocessing."""
    t = m["test_set"]
    parts = []
    if t.get("unseen_keys"):
        parts.append(f"{t['written_videos'] - t['evaluated_videos']} of the {t['written_videos']} test videos "
                     f"preprocessing wrote were not evaluated (first: {', '.join(t['unseen_keys'][:3])})")
    if t.get("failed_preprocessing"):
        parts.append(f"{t['failed_preprocessing']} of the {t['annotated_videos']} annotated test videos failed "
                     f"preprocessing (first: {', '.join(t.get('failed_keys', [])[:3])}; see stats.parquet)")
    return (f"{recipe}, {setting.replace('_', '-')} {task} on {m.get('dataset')}: " + "; ".join(parts)
            + ": these numbers are over fewer videos than the test set.")


def builtin_test_sets() -> dict[str, tuple[str, str]]:
    """Per evaluation task, the built-in synthetic benchmark's (dataset name, test shards): the
    defaults of eval.<task>, equal to params.yaml's."""
    defaults = EvalConfig()
    return {task: (getattr(defaults, task).dataset, getattr(defaults, task).shards) for task in EVAL_TASKS}


def dataset_sources(evals: list[dict], tasks: tuple[str, ...]) -> dict[str, set[tuple[str, str | None]]]:
    """For each dataset name measured by ``tasks``: the (task, test shards) behind it, the shards
    as the evaluation's params recorded them (None where an older file has none)."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for e in evals:
        recorded = e.get("params", {}).get("eval", {})
        for setting in ("zero_shot", "finetuned"):
            for task, m in e.get(setting, {}).items():
                if task in tasks:
                    out.setdefault(m["dataset"], set()).add((task, (recorded.get(task) or {}).get("shards")))
    return out


def is_builtin_test_set(dataset: str, task: str, shards: str | None) -> bool:
    """The name alone does not tell: own data evaluated without setting eval.<task>.dataset keeps
    the synthetic set's name, so its test shards must be the synthetic set's too."""
    name, builtin_shards = builtin_test_sets().get(task, (None, None))
    return dataset == name and (shards is None or Path(shards) == Path(builtin_shards))


def dataset_note(dataset: str, sources: set[tuple[str, str | None]], synthetic_note: str) -> str:
    """The table note on a column that is none of the published datasets: ``synthetic_note``
    only when every evaluation behind it used the built-in synthetic test set; otherwise a neutral
    line naming the dataset and its test shards (and the setting to name it, where own data
    carries the synthetic set's name)."""
    if all(is_builtin_test_set(dataset, task, shards) for task, shards in sources):
        return synthetic_note
    where = ", ".join(f"`{shards}`" for shards in sorted({s for _, s in sources if s}))
    line = f"'{dataset}' is measured on " + (f"the test shards {where}" if where else "its own test set")
    misnamed = sorted({task for task, _ in sources if builtin_test_sets().get(task, ("",))[0] == dataset})
    if misnamed:
        line += (", not on the built-in synthetic benchmark whose name it carries (name it with "
                 + " / ".join(f"eval.{task}.dataset" for task in misnamed) + ")")
    return line + "; not comparable with the published columns."


def measures_order_pairs(evals: list[dict], dataset: str, num_videos: int) -> bool:
    """Whether a measured retrieval row on ``dataset`` (``num_videos`` test videos) has order-pair
    accuracy: eval.retrieval.order_pairs=null leaves it out, and its chance then has no row to sit beside."""
    return any(m["dataset"] == dataset and m["normal"]["num_videos"] == num_videos
               and bool(m["normal"].get("order_pairs"))
               for e in evals for s in ("zero_shot", "finetuned") for t, m in e.get(s, {}).items() if t == "retrieval")


def retrieval_table(evals: list[dict], cfg: TablesConfig) -> Table:
    d = cfg.decimals
    measured_sets = sorted({m["dataset"] for e in evals for s in ("zero_shot", "finetuned")
                            for t, m in e.get(s, {}).items() if t == "retrieval"})
    datasets = ([MSRVTT] if cfg.reference_rows and MSRVTT not in measured_sets else []) + measured_sets
    width = len(RETRIEVAL_CELLS)
    columns = ["Method", "Kind", "Setting"] + [f"{ds} {m}" for ds in datasets for m in RETRIEVAL_CELLS] \
        + ["Checkpoint", "sha256"]
    table = Table("retrieval", "Text-to-video retrieval by VTC ranking (R@K in %, MdR = median rank; lower is "
                  "better), VTM re-ranking beside it", columns)
    for e in evals:
        for setting in ("zero_shot", "finetuned"):
            metrics = e.get(setting, {}).get("retrieval")
            if not metrics:
                continue
            if setting == "zero_shot":
                note = vtm_status(read_json(Path(cfg.metrics_dir) / f"pretrain-{e['recipe']}.json"))
            else:
                note = finetune_vtm_status(cfg, e["recipe"])
            if note:
                what = "pre-training" if setting == "zero_shot" else "retrieval fine-tuning"
                table.notes.append(f"{e['recipe']}, {what}: {note}; its VTM re-ranking column is not a trained ranking.")
            cells = {metrics["dataset"]: retrieval_cells(metrics, note and "not trained", d)}
            ck = e["checkpoints"][checkpoint_key(setting, "retrieval")]
            table.rows.append([e["recipe"], "measured", setting_label(setting, metrics, e, "retrieval")]
                              + [c for ds in datasets for c in cells.get(ds, [DASH] * width)]
                              + [ck["path"], ck["sha256"]])
    for ds in measured_sets:
        sizes = {m["normal"]["num_videos"] for e in evals for s in ("zero_shot", "finetuned")
                 for t, m in e.get(s, {}).items() if t == "retrieval" and m["dataset"] == ds}
        for n in sorted(sizes):
            r1, r5, r10, mdr = chance_retrieval_cells(n, d)
            pairs_chance = fmt(50.0, d) if measures_order_pairs(evals, ds, n) else DASH
            cells = [r1, DASH, r5, r10, mdr, r1, pairs_chance]
            table.rows.append([f"chance ({n} test videos)", "computed", "random ranking"]
                              + [c for x in datasets for c in (cells if x == ds else [DASH] * width)] + ["", ""])
    if cfg.reference_rows:
        gate = reported_gate(evals, MSRVTT)
        for method, source, note, r1, _ in REPORTED:
            cells = [gate or fmt(r1, 1)] + [DASH] * (width - 1)
            table.rows.append([method, f"reported ({source})", "fine-tuned" + (f", {note}" if note else "")]
                              + [c for ds in datasets for c in (cells if ds == MSRVTT else [DASH] * width)] + ["", ""])
        table.notes.append(f"Reported rows are published fine-tuned MSRVTT 1k-A text-to-video R@1 figures, "
                           f"copied from their papers (only R@1 is listed); they are in the {MSRVTT} column only, and "
                           f"beside a measured {MSRVTT} row only when it was evaluated with the msrvtt_ret preset "
                           f"and its protocol card matched (eval/cards.py); otherwise the cell names the differing field.")
    table.notes.extend(finetuning_gain(evals, d))
    table.notes.extend(skipped_notes(evals, ("retrieval",)))
    sources = dataset_sources(evals, ("retrieval",))
    for ds in measured_sets:
        if ds != MSRVTT:
            synthetic = (f"'{ds}' is this repository's built-in synthetic benchmark (or a dataset named by "
                         f"eval.retrieval.dataset): its numbers are not comparable with the published columns.")
            table.notes.append(dataset_note(ds, sources[ds], synthetic))
    table.notes.append("Ranks are pessimistic: a wrong candidate scoring exactly as high as the right one counts "
                       "as ranked above it. A query with several captions (v2t) is a hit if any caption is found.")
    table.notes.append("R@1 95% CI: percentile bootstrap over test videos (each resample draws videos with all their "
                       "captions; eval.bootstrap resamples, fixed seed). VTM re-rank: the VTC top-k re-ordered by "
                       "the matching head, reported beside the headline VTC ranking. Order-pair acc: % of clips "
                       "of temporal-order pairs whose own caption scores above the one with its two events swapped "
                       "(eval.retrieval.order_pairs; chance 50), by VTC similarity / by VTM; in brackets, over "
                       "pairs with both clips (VTC, Winoground's scores): text = both clips prefer their own "
                       "caption (chance 25; a model that cannot tell the two clips apart scores 0 here while "
                       "sitting at exactly 50 per clip), group = that and both captions prefer their own clip "
                       "(chance 16.7).")
    if not evals:
        table.notes.append(f"No measured rows: no <recipe>.json under {cfg.eval_dir} (run `python -m eval.evaluate`).")
    table.provenance = provenance_lines(evals)
    return table


# --------------------------------------------------------------------------- QA


QA_TABLE_TASKS = ("qa", "mc", "mc_caption", "fib")  # the QA table's columns come from these evaluations


def qa_tables(evals: list[dict], cfg: TablesConfig) -> tuple[Table, Table]:
    d = cfg.decimals
    measured = sorted({m["dataset"] for e in evals for s in ("zero_shot", "finetuned")
                       for t, m in e.get(s, {}).items() if t in QA_TABLE_TASKS})
    real = [ds for ds in REAL_QA_DATASETS if cfg.reference_rows or ds in measured]
    datasets = real + [ds for ds in measured if ds not in real]
    columns = ["Method", "Kind", "Setting"] + [f"{ds} acc" for ds in datasets] + ["Checkpoints"]
    table = Table("qa", "Video question answering (accuracy in %)", columns)
    per_type_cols = ["Method", "Setting", "Dataset", "Answer type", "Questions", "Accuracy"]
    per_type = Table("qa_per_type", "Open-ended QA accuracy per answer type (in %)", per_type_cols)
    for e in evals:
        for setting in ("zero_shot", "finetuned"):
            cells, cks, label = {}, [], None
            for task in QA_TABLE_TASKS:
                m = e.get(setting, {}).get(task)
                if not m:
                    continue
                cells[m["dataset"]] = fmt(m["normal"]["accuracy"], d)
                if task == "mc_caption" and "accuracy_vtm" in m["normal"]:
                    cells[m["dataset"]] += f" (VTM {fmt(m['normal']['accuracy_vtm'], d)})"
                ck = e["checkpoints"][checkpoint_key(setting, task)]
                if f"{ck['path']}@{ck['sha256'][:12]}" not in cks:
                    cks.append(f"{ck['path']}@{ck['sha256'][:12]}")
                label = label or setting_label(setting, m, e, task)  # QA's label names the MLM head
                if task == "qa":
                    for kind, acc in sorted(m["normal"].get("per_type", {}).items()):
                        per_type.rows.append([e["recipe"], label, m["dataset"], kind,
                                              fmt(m["normal"]["per_type_count"][kind], d), fmt(acc, d)])
            if cells:
                table.rows.append([e["recipe"], "measured", label] + [cells.get(ds, DASH) for ds in datasets]
                                  + [" ".join(cks)])
    # chance levels are properties of the test sets, the same for every recipe; but a recipe
    # that was not fine-tuned has no open-ended QA, so gather them over all recipes
    cells, answer = {}, None
    for e in evals:
        chance = e.get("chance", {})
        for setting in ("finetuned", "zero_shot"):
            for task in QA_TABLE_TASKS:
                m = e.get(setting, {}).get(task)
                if m and task == "qa" and "qa_majority" in chance:
                    cells.setdefault(m["dataset"], fmt(chance["qa_majority"]["accuracy"], d))
                    answer = answer or chance["qa_majority"].get("answer")
                if m and task in ("mc", "mc_caption") and task in chance:
                    cells.setdefault(m["dataset"], fmt(chance[task], d))
                if m and task == "fib" and "fib_majority" in chance:
                    cells.setdefault(m["dataset"], fmt(chance["fib_majority"]["accuracy"], d))
    if cells:
        table.rows.append(["chance", "computed", "QA: always the most frequent training answer"
                           + (f" ('{answer}')" if answer else "") + "; MC: 1 / options; FiB: always the most "
                           "frequent test answer"]
                          + [cells.get(ds, DASH) for ds in datasets] + [""])
    if cfg.reference_rows:
        gate = reported_gate(evals, MSRVTT_QA)
        for method, source, note, _, qa in REPORTED:
            if qa is None:
                continue
            table.rows.append([method, f"reported ({source})", "fine-tuned" + (f", {note}" if note else "")]
                              + [(gate or fmt(qa, 1)) if ds == MSRVTT_QA else DASH for ds in datasets] + [""])
        table.notes.append("Reported rows are published fine-tuned MSRVTT-QA accuracies copied from their papers.")
    sources = dataset_sources(evals, QA_TABLE_TASKS)
    for ds in measured:
        if ds not in REAL_QA_DATASETS:
            synthetic = (f"'{ds}' is measured on this repository's built-in synthetic benchmark; "
                         f"not comparable with the published columns.")
            table.notes.append(dataset_note(ds, sources[ds], synthetic))
    table.notes.append("Open-ended QA is classification over the most frequent training answers; a test answer "
                       "outside that vocabulary counts as wrong. Multiple choice picks the option whose "
                       "question+option text has the highest VTM score (so it also runs zero-shot).")
    if any(t in e.get("zero_shot", {}) for e in evals for t in ("mc_caption", "fib")):
        table.notes.append("Caption multiple choice (MSRVTT-MC protocol, zero-shot): each test clip with 5 candidate "
                           "captions (one its own, four other test clips' captions, the most similar first); the "
                           "candidate with the highest VTC cosine is the answer, VTM's accuracy in brackets "
                           "(eval/caption_choice.py). Fill-in-the-blank (LSMDC-FiB protocol, zero-shot): the "
                           "[MASK]s go where the blank is and the MLM head chooses among the test file's answer "
                           "words (eval/mlm_qa.py).")
    table.notes.append("Zero-shot open-ended QA (\"MLM head\"): the question in eval.qa.mlm_template with one [MASK] "
                       "per answer token, fused with the video; each answer of the classifier's list scores the "
                       "mean log-probability of its tokens at the masks (eval/mlm_qa.py). No QA training.")
    table.notes.extend(skipped_notes(evals, QA_TABLE_TASKS))
    if not evals:
        table.notes.append(f"No measured rows: no <recipe>.json under {cfg.eval_dir} (run `python -m eval.evaluate`).")
    table.provenance = provenance_lines(evals)
    per_type.provenance = table.provenance
    return table, per_type


# --------------------------------------------------------------------------- temporal reliance


def temporal_table(evals: list[dict], cfg: TablesConfig) -> Table:
    d = cfg.decimals
    table = Table("temporal", "Temporal reliance: HiTeA shuffle test (frames of each clip in a fixed shuffled order)",
                  ["Method", "Setting", "Task", "Dataset", "Metric", "In order", "Shuffled", "Drop"])
    for e in evals:
        for setting in ("zero_shot", "finetuned"):
            for task in ("retrieval", "qa", "mc"):
                m = e.get(setting, {}).get(task)
                if not m or "shuffled" not in m:
                    continue
                label = setting_label(setting, m, e, task)
                if task == "retrieval":
                    normal, shuffled = m["normal"]["vtc"], m["shuffled"]["vtc"]
                    # the order-dependent queries (captions of pair clips) apart from the rest
                    for part, metric in (("t2v", "t2v R@1"), ("v2t", "v2t R@1"),
                                         ("t2v_order_pairs", "t2v R@1, order-pair clips' captions"),
                                         ("t2v_other", "t2v R@1, other captions")):
                        if part in normal and part in shuffled:
                            a, b = normal[part]["R@1"], shuffled[part]["R@1"]
                            table.rows.append([e["recipe"], label, task, m["dataset"], metric,
                                               fmt(a, d), fmt(b, d), fmt(a - b, d)])
                    pairs, shuffled_pairs = m["normal"].get("order_pairs", {}), m["shuffled"].get("order_pairs", {})
                    for name in ("vtc", "vtm"):
                        if name in pairs and name in shuffled_pairs:
                            a, b = pairs[name], shuffled_pairs[name]
                            table.rows.append([e["recipe"], label, task, m["dataset"],
                                               f"order-pair acc ({name.upper()}, chance 50)",
                                               fmt(a, d), fmt(b, d), fmt(a - b, d)])
                else:
                    a, b = m["normal"]["accuracy"], m["shuffled"]["accuracy"]
                    table.rows.append([e["recipe"], label, task, m["dataset"], "accuracy",
                                       fmt(a, d), fmt(b, d), fmt(a - b, d)])
    table.notes.append("Drop = in order - shuffled; near 0 means the score does not depend on frame order.")
    if not table.rows:
        table.notes.append("No shuffle-test results (eval.shuffle_test is off, or no evaluation results yet).")
    table.provenance = provenance_lines(evals)
    return table


# --------------------------------------------------------------------------- frame ensembles


def _headline_score(task: str, normal: dict) -> tuple[str, float]:
    if task == "retrieval":
        return "t2v R@1 (VTC)", normal["vtc"]["t2v"]["R@1"]
    return "accuracy", normal["accuracy"]


def ensembles_table(evals: list[dict], cfg: TablesConfig) -> Table:
    """eval.ensemble_study: each test-time frame ensemble against the main evaluation (the
    checkpoint's training frame count unless eval.num_frames changed it)."""
    d = cfg.decimals
    table = Table("ensembles", "Test-time frame ensembles against the training frame count",
                  ["Method", "Setting", "Task", "Dataset", "Test frames", "Ensemble", "Metric", "Score",
                   "Change"])
    for e in evals:
        study = e.get("frame_ensembles")
        if not study:
            continue
        for setting in ("zero_shot", "finetuned"):
            for task in ("retrieval", "qa", "mc"):
                base = e.get(setting, {}).get(task)
                runs = [(mode, study["modes"][mode][setting][task]) for mode in ENSEMBLE_MODES
                        if task in study["modes"].get(mode, {}).get(setting, {})]  # not the file's (sorted) order
                if not base or not runs:
                    continue
                metric, ref = _headline_score(task, base["normal"])
                kind = "zero-shot" if setting == "zero_shot" else "fine-tuned"
                table.rows.append([e["recipe"], kind, task, base["dataset"], str(base["frames"]),
                                   base.get("frames_ensemble", {}).get("label", "none (as evaluated)"), metric,
                                   fmt(ref, d), DASH])
                for mode, m in runs:
                    _, score = _headline_score(task, m["normal"])
                    table.rows.append([e["recipe"], kind, task, m["dataset"], str(m["frames"]),
                                       m["frames_ensemble"]["label"], metric, fmt(score, d),
                                       f"{score - ref:+.{d}f}"])
    table.notes += [
        "concat: one clip of all test frames (temporal position embeddings interpolated); mean / max / lse: "
        "the test frames split into interleaved groups of the training frame count, each group scored on its "
        "own, the scores (VTC cosine and VTM logit; QA answer log-probabilities; MC option VTM logits) "
        "combined; lse = tau * log mean exp(score / tau) (eval/ensemble.py).",
        "Change = score - the first row of its block (the main evaluation); one seed, no intervals: "
        "differences of a few points on the small synthetic test sets are within noise "
        "(see the retrieval table's 95% intervals).",
    ]
    if not table.rows:
        table.notes.append("No ensemble study (eval.ensemble_study.modes is empty, or no evaluation results yet).")
    table.provenance = provenance_lines(evals)
    return table


# --------------------------------------------------------------------------- efficiency


def device_hours(cost: dict) -> float | None:
    """On the CPU a run costs its wall time times the cores it used; on a GPU, its wall time
    times the GPUs (world size)."""
    wall = cost.get("train_wall_s")
    if wall is None:
        return None
    if str(cost.get("device", "?")).startswith("cuda"):
        return wall * cost.get("world_size", 1) / 3600.0
    return wall * (cost.get("threads") or 1) * cost.get("world_size", 1) / 3600.0


def clips_seen(cost: dict) -> int | None:
    """Clips the trainer was given: the loader's count when the run recorded it. Steps x batch
    overstates a small collection, whose epochs end in short batches."""
    counted = cost.get("samples_per_source")
    if counted:
        return int(sum(counted.values()))
    steps = cost.get("steps")
    return steps * cost["clips_per_step"] if steps is not None and "clips_per_step" in cost else None


def efficiency_table(evals: list[dict], cfg: TablesConfig) -> Table:
    d = cfg.decimals
    metrics_dir = Path(cfg.metrics_dir)
    columns = ["Recipe", "Steps", "Clips seen", "Device", "Threads", "Train wall (h)", "Device-hours",
               "GFLOPs / clip", "Train PFLOPs", "Clips / s", "Paper-scale GPU-hours (projected)",
               "Zero-shot t2v R@1", "Fine-tuned t2v R@1", "QA acc", "Accuracy dataset"]
    table = Table("efficiency", "Pre-training cost against accuracy", columns)
    by_recipe = {e["recipe"]: e for e in evals}
    recipes = sorted({p.stem[len("pretrain-"):] for p in pretrain_files(cfg)} | set(by_recipe))
    bench = read_json(Path(cfg.bench))
    projection = (bench or {}).get("projection", {})
    for recipe in recipes:
        cost = read_json(metrics_dir / f"pretrain-{recipe}.json")
        e = by_recipe.get(recipe, {})
        zs = e.get("zero_shot", {}).get("retrieval")
        ft = e.get("finetuned", {}).get("retrieval")
        qa = e.get("finetuned", {}).get("qa")
        acc = [fmt(headline_scores(zs)["t2v"]["R@1"], d) if zs else DASH,
               fmt(headline_scores(ft)["t2v"]["R@1"], d) if ft else DASH,
               fmt(qa["normal"]["accuracy"], d) if qa else DASH,
               " / ".join(sorted({m["dataset"] for m in (zs, ft, qa) if m})) or DASH]
        if cost is None:
            table.rows.append([recipe] + [DASH] * 10 + acc)
            table.notes.append(f"{recipe}: no pre-training cost file {metrics_dir}/pretrain-{recipe}.json "
                               f"(written by `python -m train.pretrain --recipe {recipe}`).")
            continue
        steps = cost.get("steps")
        clips = clips_seen(cost)
        wall = cost.get("train_wall_s")
        device = str(cost.get("device", "?"))
        threads = cost.get("threads")
        dev_hours = device_hours(cost)
        fpc = cost.get("flops_per_clip")
        # the paper-scale projection is per recipe (same model at paper size), from the bench
        projected = projection.get(cost.get("recipe", recipe), {}).get("gpu_hours")
        table.rows.append([
            recipe, fmt(steps, d), fmt(clips, d), device, fmt(threads, d),
            fmt(wall / 3600.0 if wall is not None else None, 3),
            fmt(dev_hours, 3) + (" GPU-h" if device.startswith("cuda") else " core-h") if dev_hours is not None else DASH,
            fmt(fpc / 1e9 if fpc is not None else None, 2),
            fmt(fpc * clips / 1e15 if fpc is not None and clips is not None else None, 3),
            fmt(cost.get("clips_per_s"), 2),
            fmt(projected, 1),
        ] + acc)
    if bench is None:
        table.notes.append(f"No throughput benchmark {cfg.bench} (written by `python -m train.bench`).")
    else:
        cand, base = bench.get("candidate", "?"), bench.get("baseline", "?")
        table.notes.append(
            f"Benchmark {cfg.bench}: {cand} trains {fmt(bench.get('speedup'), 2)}x the clips/s of {base} "
            f"and needs {fmt(bench.get('flops_ratio'), 2)}x fewer FLOPs per clip (same batches, interleaved steps, "
            f"device {bench.get('machine', {}).get('device', '?')}).")
    assumptions = next((p.get("assumptions") for p in projection.values() if isinstance(p, dict)), None)
    if assumptions:
        table.notes.append(f"Paper-scale GPU-hours are a projection of each recipe at paper scale (FLOPs per clip of "
                           f"the {assumptions['preset']} model x {assumptions['clips']} clips x {assumptions['epochs']} "
                           f"epochs / {assumptions['sustained_tflops']:.1f} TFLOP/s sustained on one {assumptions['gpu']}); "
                           f"assumptions from params.yaml `cost:`, figures in {cfg.bench}. The paper's claim: about 50 "
                           f"A6000 GPU-hours, 1.9x or more lower cost than dense pre-training.")
        per_clip = ", ".join(f"{name} {fmt(p['flops_per_clip'] / 1e9, 1)}" for name, p in projection.items()
                             if isinstance(p, dict) and "flops_per_clip" in p)
        counted = {True: "attention counted", False: "attention NOT counted"}.get(
            (bench or {}).get("attention_counted", projection.get("attention_counted")), "attention count unknown")
        table.notes.append(f"Paper-scale GFLOP per clip (one training step, forward + backward, {counted}): "
                           f"{per_clip}.")
    table.notes.append(f"The same cost against zero-shot R@1, one point per run and seed: `{cfg.cost_plot}`.")
    table.notes.append("Device-hours: core-hours on the CPU (train wall time x torch threads), GPU-hours on GPUs. "
                       f"Accuracy columns come from {cfg.eval_dir}/<recipe>.json, on the dataset named in the last column.")
    table.provenance = provenance_lines(evals)
    return table


# --------------------------------------------------------------------------- main


def check_inputs(cfg: TablesConfig, evals: list[dict], params_path: str | Path | None) -> None:
    """Refuse results that the current params did not make: every eval file, pre-training
    metrics file and the benchmark this program reads must carry the params hash of the keys
    its own stage reads, equal to the hash of those keys in ``params_path`` now."""
    for data in evals:
        provenance.check(data, data["_file"], params_path)
    for path in pretrain_files(cfg) + [Path(cfg.bench)]:
        data = read_json(path)
        if data is not None:
            provenance.check(data, path, params_path)


def write_tables(cfg: TablesConfig, params_path: str | Path | None = None, *, check: bool = True) -> list[Path]:
    """Render every table; ``check``: first refuse inputs made by other params than ``params_path``
    (default: the repository's params.yaml)."""
    evals = load_eval_metrics(Path(cfg.eval_dir), cfg.runs)
    if check:
        check_inputs(cfg, evals, params_path)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qa, per_type = qa_tables(evals, cfg)
    written = []
    tables = (retrieval_table(evals, cfg), qa, per_type, efficiency_table(evals, cfg), temporal_table(evals, cfg),
              ensembles_table(evals, cfg))
    for table in tables:
        for ext, text in (("md", table.markdown()), ("csv", table.csv())):
            path = out / f"{table.name}.{ext}"
            path.write_text(text)
            written.append(path)
    record = provenance_record(cfg, evals)
    (out / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (out / "provenance.md").write_text(provenance_markdown(record, list(tables)))
    written += [out / "provenance.json", out / "provenance.md"]
    from eval.cost_plot import plot_cost_vs_accuracy

    written.append(plot_cost_vs_accuracy(cfg, params_path, check=check))
    return written


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.tables", description=__doc__.split("\n\n")[0])
    cli.add_config_arguments(p, run_dir=True)
    args = cli.parse(p, argv)
    params = load_params(args.params, overrides=args.overrides)
    cfg = section(params, TablesConfig, "tables")
    if args.print_config:
        return cli.print_config(params)
    return cli.print_written(lambda: write_tables(cfg, args.params))


if __name__ == "__main__":
    sys.exit(main())
