"""The README's own-data walk-through, run literally on a small generated collection.

The block under ``<!-- walkthrough: own-data -->`` is extracted from README.md and run with
bash in a copy of the working tree (a git repository whose results/ are the committed ones, as
in a clone where ``dvc repro`` has run), on a collection laid out as a user's would be: a
WebVid-style train.csv, an MSRVTT 1k-A test.csv and a folder of videos (made by the built-in
generator, 16 clips) with ``STEPS=2``. It must end with R@1 printed and saved, and leave every tracked file as it
was, writing nothing outside its run folder.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: preprocessing, training, evaluation (about 3 min on 2 cores)

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- walkthrough: own-data -->"


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(re.escape(MARK) + r"\s*```bash\n(.*?)```", text, re.S)
    assert match, f"README.md has no bash block after {MARK}"
    return match.group(1)


def copy_worktree(dst: Path) -> None:
    """Tracked and new (not ignored) files of the working tree, committed in a fresh repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *cmd], cwd=dst, check=True, capture_output=True)


def make_collection(repo: Path, gen: Path) -> None:
    """``my_videos/``: train.csv (WebVid), test.csv (MSRVTT 1k-A: one caption per video), videos/."""
    subprocess.run([sys.executable, "-m", "pipeline.synthetic", "--out", str(gen), "--num-clips", "16",
                    "--workers", "2", "--no-progress", "synthetic.duration_range=[2.0,2.5]",
                    "synthetic.pretrain_clips=0"],
                   cwd=repo, check=True, capture_output=True)
    data = repo / "my_videos"
    with tarfile.open(gen / "videos.tar") as tar:
        tar.extractall(data, filter="data")  # members are videos/<key>.<ext>
    shutil.copy(gen / "annotations" / "webvid_train.csv", data / "train.csv")
    test = json.loads((gen / "annotations" / "msrvtt" / "msrvtt_ret_test.json").read_text())
    first: dict[str, str] = {}
    for ann in test["annotations"]:
        first.setdefault(str(ann["image_id"]), ann["caption"])
    with (data / "test.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        for i, (vid, caption) in enumerate(sorted(first.items())):
            w.writerow([f"ret{i}", f"msr{i}", vid, caption])
    assert len(first) >= 2


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("own") / "repo"
    repo.mkdir()
    copy_worktree(repo)
    make_collection(repo, repo.parent / "gen")
    return repo


@pytest.fixture(scope="module")
def walked(clone) -> tuple[Path, subprocess.CompletedProcess]:
    """The clone after the README block ran in it (STEPS=2, as a user would set it)."""
    env = {**os.environ, "STEPS": "2", "PYTHONPATH": str(clone)}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block()], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    return clone, proc


def evaluate(clone: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eval.evaluate", *args], cwd=clone, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(clone)})


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_readme_walkthrough_runs_literally(walked):
    clone, proc = walked
    out = proc.stdout
    # training said where its checkpoint and metrics went
    assert "checkpoint: runs/mine/models/pretrain/smaug" in out, out
    assert (clone / "runs/mine/models/pretrain/smaug/model.safetensors").is_file()
    pretrain = json.loads((clone / "runs/mine/results/metrics/pretrain-smaug.json").read_text())
    assert pretrain["steps"] == 2

    # the same command again: nothing to do, and it says where the run is
    again = subprocess.run(["bash", "-c", "RUN=runs/mine STEPS=2; " + next(
        ln for ln in readme_block().replace("\\\n", " ").splitlines() if "train.pretrain" in ln)],
        cwd=clone, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(clone)})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already finished (2 steps)" in again.stdout and "checkpoint: runs/mine/models/pretrain/smaug" in again.stdout

    # evaluation printed R@1 and saved the same number where `dvc metrics show` reads it
    printed = re.search(r"smaug zero-shot retrieval \(mine\): t2v R@1 (\d+\.\d) \[", out)
    assert printed, out
    metrics_file = clone / "runs/mine/results/metrics/eval-smaug.json"
    saved = json.loads(metrics_file.read_text())
    assert f"{saved['zero_shot']['retrieval']['t2v_R@1']:.1f}" == printed.group(1)
    assert "pending" not in saved
    assert sorted(saved["zero_shot"]) == ["retrieval"] and "finetuned" not in saved
    details = json.loads((clone / "runs/mine/results/eval/smaug.json").read_text())
    n_test = sum(1 for _ in (clone / "my_videos/test.csv").open()) - 1
    assert details["zero_shot"]["retrieval"]["normal"]["num_videos"] == n_test
    assert "zero_shot.retrieval.t2v_R@1" in out  # `dvc metrics show` read the file

    table = (clone / "runs/mine/results/tables/retrieval.md").read_text()
    assert "| mine R@1 |" in table and f"| {printed.group(1)} |" in table

    # every annotation row accounted for, in both sets
    for name, rows in (("train", None), ("test", n_test)):
        summary = json.loads((clone / f"runs/mine/shards/{name}/stats_summary.json").read_text())
        assert summary["failed"] == 0, summary
        if rows is not None:
            assert summary["ok"] == rows

    # nothing committed changed, nothing was written outside the run folder (and the data)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert status == ["?? my_videos/"], status
    changed = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", "results"], cwd=clone,
                             capture_output=True, text=True, check=True).stdout
    assert changed == ""


def test_run_dir_puts_every_output_folder_under_it():
    from pipeline.cli import RUN_DIR_KEYS, run_dir_overrides
    from pipeline.config import load_params

    params = load_params(None, overrides=[*run_dir_overrides("runs/x"), "eval.plots_dir=/abs/plots"])
    for dotted in RUN_DIR_KEYS:
        section, key = dotted.split(".")
        value = params[section][key]
        assert value == "/abs/plots" if dotted == "eval.plots_dir" else value.startswith("runs/x/"), (dotted, value)
    assert params["pretrain"]["out_dir"] == "runs/x/models/pretrain"
    assert params["eval"]["metrics_dir"] == "runs/x/results/metrics"


def test_evaluation_checks_recipes_and_tasks_before_any_work(walked):
    clone, _ = walked
    metrics = clone / "runs/mine/results/metrics/eval-smaug.json"
    before = metrics.read_bytes()
    # a recipe never trained in this run folder (dense) is named, with the way out
    err = error_line(evaluate(clone, "--run-dir", "runs/mine", "eval.recipes=[smaug,dense]"))
    assert err.startswith("error: eval.recipes: no pre-trained checkpoint for dense (runs/mine/models/pretrain/dense)")
    assert "eval.recipes=[smaug]" in err
    err = error_line(evaluate(clone, "--run-dir", "runs/mine", "--recipe", "nosuch"))
    assert err.startswith("error: --recipe: no pre-trained checkpoint for nosuch")
    # the default eval.tasks: the built-in qa and mc test shards are not in this clone
    err = error_line(evaluate(clone, "--run-dir", "runs/mine", "--recipe", "smaug",
                              "eval.retrieval.shards=runs/mine/shards/test", "eval.retrieval.order_pairs=null"))
    assert err.startswith("error: eval.qa.shards: ") and "data/shards/qa_test" in err, err
    assert "eval.tasks lists qa" in err and "eval.tasks=[retrieval]" in err, err
    # no listed task has data: no task is suggested, the key to point at is
    err = error_line(evaluate(clone, "--run-dir", "runs/mine", "--recipe", "smaug", "eval.tasks=[retrieval]",
                              "eval.retrieval.shards=runs/mine/shards/none", "eval.retrieval.order_pairs=null"))
    assert "no task in eval.tasks has data" in err and "eval.tasks=[" not in err, err
    # order pairs of another collection: named, with the way out
    pairs = clone / "runs" / "pairs.json"
    pairs.write_text(json.dumps([{"key": "not_here", "caption": "a b", "swapped_caption": "b a"}]))
    err = error_line(evaluate(clone, "--run-dir", "runs/mine", "--recipe", "smaug", "eval.tasks=[retrieval]",
                              "eval.retrieval.shards=runs/mine/shards/test", f"eval.retrieval.order_pairs={pairs}"))
    assert err.startswith("error: eval.retrieval.order_pairs: none of the 1 clips") and "=null" in err, err
    assert metrics.read_bytes() == before  # nothing was written


def test_a_later_failure_keeps_the_tasks_already_evaluated(walked):
    clone, _ = walked
    out = "runs/mine/partial"
    # mc on the retrieval shards (no questions) fails after retrieval has finished
    proc = evaluate(clone, "--run-dir", "runs/mine", "--recipe", "smaug", "eval.tasks=[retrieval,mc]",
                    "eval.retrieval.shards=runs/mine/shards/test", "eval.mc.shards=runs/mine/shards/test",
                    "eval.retrieval.order_pairs=null", "eval.shuffle_test=false", "eval.bootstrap=0",
                    f"eval.metrics_dir={out}/metrics", f"eval.details_dir={out}/eval")
    assert proc.returncode == 2 and "error: " in proc.stderr, proc.stderr[-2000:]
    saved = json.loads((clone / out / "metrics/eval-smaug.json").read_text())
    assert "t2v_R@1" in saved["zero_shot"]["retrieval"]
    assert saved["pending"] == ["zero_shot/mc"]
    details = json.loads((clone / out / "eval/smaug.json").read_text())
    assert details["pending"] == ["zero_shot/mc"] and "retrieval" in details["zero_shot"]
    # the tables refuse an unfinished evaluation, naming it
    tables = subprocess.run([sys.executable, "-m", "eval.tables", "--run-dir", "runs/mine",
                             f"tables.eval_dir={out}/eval"], cwd=clone, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(clone)})
    err = error_line(tables)
    assert f"{out}/eval/smaug.json: unfinished evaluation (still pending: zero_shot/mc)" in err, err


def test_dvc_template_reproduces_a_collection(walked):
    """templates/own-data, copied and pointed at the collection, is a working DVC pipeline."""
    import yaml

    clone, _ = walked
    run = clone / "projects" / "mine"
    shutil.copytree(clone / "templates" / "own-data", run)
    own = yaml.safe_load((run / "own.yaml").read_text())
    assert own["sets"]["train"]["annotations"] == "my_videos/train.csv"  # what the README names
    own.update(run_dir="runs/dvcrun", steps=2, warmup=0)
    out_dir = clone / "runs" / "dvcrun"
    (run / "own.yaml").write_text(yaml.safe_dump(own))

    def dvc(*args: str) -> str:
        proc = subprocess.run(["dvc", *args], cwd=clone, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONPATH": str(clone)})
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc.stdout

    dvc("repro", "projects/mine/dvc.yaml")
    saved = json.loads((out_dir / "results/metrics/eval-smaug.json").read_text())
    assert 0.0 <= saved["zero_shot"]["retrieval"]["t2v_R@1"] <= 100.0
    assert json.loads((out_dir / "results/metrics/pretrain-smaug.json").read_text())["steps"] == 2
    assert (out_dir / "shards/test/stats.parquet").is_file()
    ckpt = out_dir / "models/pretrain/smaug/model.safetensors"
    stamp = ckpt.stat().st_mtime_ns
    assert "runs/dvcrun/results/metrics/eval-smaug.json" in dvc("metrics", "show")  # beside the built-in ones
    out = dvc("repro", "projects/mine/dvc.yaml")  # nothing changed: nothing reruns
    assert "didn't change" in out and "Running stage" not in out, out
    assert ckpt.stat().st_mtime_ns == stamp
    # a changed setting reruns the stages that read it, and only those
    own["dataset"] = "renamed"
    (run / "own.yaml").write_text(yaml.safe_dump(own))
    out = dvc("repro", "projects/mine/dvc.yaml")
    assert "Running stage 'projects/mine/dvc.yaml:evaluate'" in out, out
    assert "Running stage 'projects/mine/dvc.yaml:pretrain'" not in out, out
    assert ckpt.stat().st_mtime_ns == stamp
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert status == ["?? my_videos/", "?? projects/"], status  # the pipeline is yours to commit
