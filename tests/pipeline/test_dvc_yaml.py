"""dvc.yaml is written by hand, and each stage lists exactly the params its program reads."""

from __future__ import annotations

import yaml

from pipeline.config import DEFAULT_PARAMS, REPO_ROOT, load_recipe, load_yaml

DVC = REPO_ROOT / "dvc.yaml"
TRAINED = ("seed", "pretrain", "model", "loader")  # what train.pretrain reads


def stages() -> dict:
    return yaml.safe_load(DVC.read_text())["stages"]


def keys_a_recipe_reads(recipe: str) -> set[str]:
    """The params.yaml keys a training run of ``recipe`` reads: every key of the sections it
    reads, minus those the recipe sets itself, as compact as DVC takes them (a whole
    section or sub-section when the recipe sets nothing inside it)."""
    base, overlay = load_yaml(DEFAULT_PARAMS), load_recipe(recipe)
    out: set[str] = set()

    def walk(tree: dict, over: dict, prefix: str) -> None:
        for key, value in tree.items():
            if key not in over:
                out.add(prefix + key)
            elif isinstance(value, dict) and value and isinstance(over[key], dict):
                walk(value, over[key], f"{prefix}{key}.")

    walk({k: base[k] for k in TRAINED}, overlay, "")
    return out


def _exists(dotted: str, tree: dict) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_no_generated_header_and_comments_for_people():
    text = DVC.read_text()
    assert "generated" not in text.lower().split("stages:")[0]
    assert text.count("#") > 10


def test_every_listed_param_exists():
    base = load_yaml(DEFAULT_PARAMS)
    for name, stage in stages().items():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            key = key.replace("${item.task}", "retrieval")
            assert _exists(key, base), f"{name}: params.yaml has no {key}"


def test_pretrain_stages_list_what_their_recipe_reads():
    s = stages()
    assert set(s["pretrain-smaug"]["params"]) == keys_a_recipe_reads("smaug")
    assert set(s["pretrain-dense"]["params"]) == keys_a_recipe_reads("dense")
    assert set(s["pretrain-equal-time"]["params"]) == keys_a_recipe_reads("dense")
    # the key of the done-when: smaug reads it, dense sets it itself
    assert "model.masking.video_ratio" not in keys_a_recipe_reads("dense")


def test_cost_assumptions_retrain_nothing():
    for name, stage in stages().items():
        params = stage.get("do", stage).get("params", [])
        assert ("cost" in params) == (name == "pretrain-bench"), name
