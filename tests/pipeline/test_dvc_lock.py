"""The committed dvc.lock files record the code, params and results of this very commit.

When a stage's code or params change after its results were committed, `dvc status` calls the
stage stale and its committed results no longer come from the committed code (issue 15, item
7). It happened once: an import-order edit of preprocess/ingest.py left every data stage's
record behind, and nothing noticed until a `dvc status` by hand. A clone holds no data, weights or
DVC cache, so only those absences are tolerated here; anything DVC finds *modified* (a code file,
a params key, a committed results file) fails the test with the stage and path named.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pipeline.config import REPO_ROOT

# The pipelines whose committed results the tables and the README quote. (studies/images is a
# study's record of an earlier default, not regenerated with it: studies/README.md says so.)
PIPELINES = ("dvc.yaml", "ablation/dvc.yaml")
ABSENT_IN_A_CLONE = {"deleted", "not in cache"}


def stale_records(status: dict) -> list[str]:
    """``stage: path (how)`` for every dependency or output `dvc status --json` finds changed,
    except the data and weights a clone does not have."""
    found = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):  # e.g. "always changed"
                found.append(f"{stage}: {change}")
                continue
            for kind in ("changed deps", "changed outs"):
                for path, how in change.get(kind, {}).items():
                    if isinstance(how, dict):  # params.yaml: {key: modified, ...}
                        found += [f"{stage}: {path} {key} ({what})" for key, what in how.items()]
                    elif how not in ABSENT_IN_A_CLONE:
                        found.append(f"{stage}: {path} ({how})")
    return found


def test_stale_records_are_found_and_absent_data_is_not():
    status = {
        "shard@pretrain": [
            {"changed deps": {"preprocess": "modified", "data/raw/synthetic": "deleted"}},
            {"changed outs": {"data/shards/pretrain": "not in cache"}},
        ],
        "pretrain-smaug": [{"changed deps": {"params.yaml": {"pretrain.steps": "modified"}}}],
        "tables": [{"changed outs": {"results/tables/retrieval.md": "modified"}}],
        "generate": [{"changed outs": {"data/raw/synthetic": "not in cache"}}],
    }
    assert stale_records(status) == [
        "shard@pretrain: preprocess (modified)",
        "pretrain-smaug: params.yaml pretrain.steps (modified)",
        "tables: results/tables/retrieval.md (modified)",
    ]


@pytest.mark.skipif(shutil.which("dvc") is None, reason="needs the dvc command")
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_committed_lock_matches_committed_code_params_and_results(pipeline):
    run = subprocess.run(
        ["dvc", "status", "--json", pipeline],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    stale = stale_records(json.loads(run.stdout or "{}"))
    assert not stale, (
        f"{pipeline}: the committed dvc.lock no longer matches this commit; rerun these stages "
        "(or, when their outputs are the same bytes, record the new hashes) before committing:\n"
        + "\n".join(stale)
    )
