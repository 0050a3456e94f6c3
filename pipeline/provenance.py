"""Which params made a results file: a hash of the keys its stage reads, written into the file.

Every program that writes a results file (``train.pretrain``, ``train.bench``,
``train.data.bench``, ``eval.evaluate``, ``eval.ablation``) stores ``params_provenance``::

    {"keys": {"seed": "3f2a...", "pretrain": "9c1d...", ...},   # one hash per key it reads
     "sha256": "...",                                            # all of them together
     "recipe": "dense" | null, "overrides": ["pretrain.seed=1", ...]}

The keys are the ones its DVC stage lists under ``params:`` (whole sections or dotted keys),
hashed after the recipe and the overrides are applied, so two runs of one recipe with other
seeds differ, and a ``params.yaml`` edit shows. :func:`check` recomputes the hashes from the
current params file with the recorded recipe and overrides: the tables refuse a file whose hash
differs, naming the file, the keys that differ and both hashes, instead of rendering numbers that
the current params did not make.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from pipeline.config import ConfigError, load_params

FIELD = "params_provenance"

# What each program reads (the `params:` lists of its dvc.yaml stages; dense's stage lists fewer
# keys because its recipe sets the others, which hashing the resolved sections covers).
PRETRAIN_KEYS = ("seed", "pretrain", "model", "loader")
BENCH_KEYS = (*PRETRAIN_KEYS, "cost")
LOADER_BENCH_KEYS = ("seed", "loader")
EVAL_KEYS = ("seed", "eval", "finetune.qa.shards", "finetune.qa.vocab_size")  # vocab_size: zero-shot MLM QA's answer list


class ProvenanceError(ValueError):
    """A results file was made by other params than the current ones (or records none)."""


def value_at(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None  # an absent key hashes as null: adding it with a non-null value shows
        node = node[part]
    return node


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stamp(params: dict, keys: Iterable[str], *, recipe: str | None = None,
          overrides: Iterable[str] = ()) -> dict:
    """The provenance record of a file made from resolved ``params`` (recipe and overrides applied)."""
    per_key = {k: digest(value_at(params, k)) for k in keys}
    return {"keys": per_key, "sha256": digest(per_key), "recipe": recipe, "overrides": list(overrides)}


def check(data: dict, file: str | Path, params_path: str | Path | None) -> None:
    """Raise :class:`ProvenanceError` unless ``data`` was made by the current params.

    ``params_path``: the params file the check runs against (the tables' own ``--params``)."""
    record = data.get(FIELD)
    if not isinstance(record, dict) or not isinstance(record.get("keys"), dict):
        raise ProvenanceError(f"{file}: records no params hash ({FIELD}); it was written by an older "
                              f"version or by hand: rerun the stage that writes it (dvc repro)")
    try:
        current = load_params(params_path, recipe=record.get("recipe"), overrides=record.get("overrides") or [])
    except ConfigError as err:
        raise ProvenanceError(f"{file}: its recorded recipe/overrides no longer apply ({err})") from None
    now = stamp(current, record["keys"], recipe=record.get("recipe"))
    if now["sha256"] == record.get("sha256"):
        return
    differ = [k for k, h in record["keys"].items() if now["keys"][k] != h] or sorted(record["keys"])
    detail = ", ".join(f"{k} (file {record['keys'][k]}, params {now['keys'][k]})" for k in differ)
    raise ProvenanceError(f"{file}: made by other params than {params_path or 'params.yaml'}: {detail}; "
                          f"rerun the stage that writes it (dvc repro) or restore the params")
