"""dvc.yaml is written by hand, and each stage lists exactly the params its program reads."""

from __future__ import annotations

import yaml

from pipeline.config import DEFAULT_PARAMS, REPO_ROOT, load_recipe, load_yaml

DVC = REPO_ROOT / "dvc.yaml"
TRAINED = ("seed", "pretrain", "model", "loader", "log")  # what train.pretrain reads


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
    s, a = stages(), ablation_stages()
    assert set(s["pretrain-smaug"]["params"]) == keys_a_recipe_reads("smaug")
    assert set(a["pretrain-dense"]["params"]) == keys_a_recipe_reads("dense")
    assert set(a["pretrain-equal-time"]["params"]) == keys_a_recipe_reads("dense")
    # the key of the done-when: smaug reads it, dense sets it itself
    assert "model.masking.video_ratio" not in keys_a_recipe_reads("dense")


def test_the_default_pipeline_trains_and_reports_smaug_alone():
    """A plain `dvc repro` trains one run, and the eval and tables stages declare exactly the runs
    they are told to read (eval.recipes, the tables stage's tables.runs), so no stage reads a file DVC does not
    know it depends on."""
    base, s = load_yaml(DEFAULT_PARAMS), stages()
    assert [name for name in s if name.startswith("pretrain-") and name != "pretrain-bench"] == ["pretrain-smaug"]
    assert {i["recipe"] for i in s["finetune"]["foreach"].values()} == {"smaug"}
    runs = s["tables"]["cmd"].split("tables.runs=[")[1].split("]")[0].split(",")
    assert base["eval"]["recipes"] == runs == ["smaug"]
    evaluated = [d for d in s["eval"]["deps"] if d.startswith("models/pretrain/")]
    assert evaluated == [f"models/pretrain/{r}" for r in base["eval"]["recipes"]]
    outs = [next(iter(o)) for o in s["eval"]["outs"]]
    assert outs == [f"results/eval/{r}.json" for r in base["eval"]["recipes"]]
    read = {d for d in s["tables"]["deps"] if d.startswith("results/")}
    # a fine-tuned row's VTM status comes from its retrieval fine-tuning's loss curve
    curves = {f"results/plots/finetune/{r}-retrieval.csv" for r in runs if f"{r}-retrieval" in s["finetune"]["foreach"]}
    assert curves == {"results/plots/finetune/smaug-retrieval.csv"}
    assert read == {f"results/eval/{r}.json" for r in runs} | \
        {f"results/metrics/pretrain-{r}.json" for r in runs} | {base["tables"]["bench"]} | curves


def test_the_paper_tables_stage_reads_what_it_names():
    a = ablation_stages()
    cmd = a["tables-paper"]["cmd"]
    runs = cmd.split("tables.runs=[")[1].split("]")[0].split(",")
    assert runs == ["smaug", "dense", "dense-equal-time"]
    deps = set(a["tables-paper"]["deps"])
    assert {f"results/eval/{r}.json" for r in runs} | {f"results/metrics/pretrain-{r}.json" for r in runs} <= deps
    # dense's evaluation follows the default eval stage's protocol and declares the same params
    for run in ("dense", "dense-equal-time"):
        assert a[f"eval-{run}"]["params"] == stages()["eval"]["params"]
        assert a[f"eval-{run}"]["cmd"].endswith(f"--recipe {run}")
        assert f"results/metrics/pretrain-{run}.json" in a[f"eval-{run}"]["deps"]  # the weights' receipt
    assert {f"results/plots/finetune/dense-{t}.csv" for t in a["finetune-dense"]["foreach"]} <= set(a["eval-dense"]["deps"])


def test_ablation_stages_keep_numbers_not_weights():
    """No ablation stage declares a checkpoint as a DVC output, and every stage that reads weights
    depends on the receipt (the metrics JSON or loss curve, committed) of the stage that wrote them:
    a clone with the committed results sees finished runs as done, so the full run can be split
    over sessions and machines (ablation/dvc.yaml's header)."""
    a = ablation_stages()
    for name, s in a.items():
        body = s.get("do", s)
        for kind in ("outs", "metrics", "plots"):
            for o in body.get(kind, []):
                out = next(iter(o)) if isinstance(o, dict) else o
                assert not out.startswith("models/"), (name, out)
                assert isinstance(o, dict) and next(iter(o.values())).get("cache") is False, (name, out)
        assert not any(d.startswith("models/") for d in body.get("deps", [])), name
    for item in a["eval-zero-shot"]["foreach"].values():
        assert item["trained"] == f"results/ablation/metrics/pretrain-{item['run']}.json"
    for item in a["eval-sparsify-off"]["foreach"].values():
        assert item["trained"].endswith(f"/pretrain-{item['run']}.json")
    assert "results/metrics/pretrain-dense.json" in a["finetune-dense"]["do"]["deps"]
    # the shard folders' resume state names the clone's absolute paths: out of DVC's hashes, or a
    # clone at another path would see every committed run as stale
    ignored = [line.strip() for line in (REPO_ROOT / ".dvcignore").read_text().splitlines()]
    assert {"_plan.json", "_stats/"} <= set(ignored)


def test_cost_assumptions_retrain_nothing():
    for name, stage in stages().items():
        params = stage.get("do", stage).get("params", [])
        assert ("cost" in params) == (name == "pretrain-bench"), name


# --------------------------------------------------------------------------- ablation/dvc.yaml

ABLATION = REPO_ROOT / "ablation" / "dvc.yaml"


def ablation_stages() -> dict:
    return yaml.safe_load(ABLATION.read_text())["stages"]


def test_ablation_pipeline_is_apart_from_the_default_one():
    """`dvc repro` (no target) reproduces ./dvc.yaml only: the seeds and the other recipes live in
    ablation/dvc.yaml, run from the repository root, and write nothing the default stages write."""
    default, ablation = stages(), ablation_stages()
    assert not set(default) & set(ablation)
    assert all(s.get("do", s)["wdir"] == ".." for s in ablation.values())
    outs = lambda body: {next(iter(o)) if isinstance(o, dict) else o for o in body.get("outs", [])}  # noqa: E731
    default_outs = set().union(*(outs(s.get("do", s)) for s in default.values()))
    for name, s in ablation.items():
        for out in outs(s.get("do", s)):
            assert not any(out == d or out.startswith(d.rstrip("/") + "/") for d in default_outs), (name, out)


def test_ablation_runs_match_params_and_list_what_their_recipe_reads():
    base = load_yaml(DEFAULT_PARAMS)["ablation"]
    s = ablation_stages()
    for stage, recipe, run in (("pretrain-smaug-seeds", "smaug", "smaug"), ("pretrain-dense-seeds", "dense", "dense"),
                               ("pretrain-equal-time-seeds", "dense", "dense-equal-time"),
                               ("pretrain-mask-no-mvm-seeds", "mask-no-mvm", "mask-no-mvm")):
        assert run in base["seeded"]
        items = s[stage]["foreach"]
        assert sorted(i["seed"] for i in items.values()) == sorted(base["extra_seeds"])
        assert all(i["run"] == f"{run}-seed{i['seed']}" for i in items.values())
        body = s[stage]["do"]
        assert f"--recipe {recipe} " in body["cmd"] and "pretrain.seed=${item.seed}" in body["cmd"]
        assert set(body["params"]) == keys_a_recipe_reads(recipe)
    assert "--equal-time" in s["pretrain-equal-time-seeds"]["do"]["cmd"].split("pretrain.seed")[1]  # after the overrides
    first_seed_elsewhere = ("smaug", "dense", "dense-equal-time")  # the default pipeline's / the baselines above
    for row in base["rows"]:
        if row not in first_seed_elsewhere:
            assert set(s[f"pretrain-{row}"]["params"]) == keys_a_recipe_reads(row), row
            assert f"--recipe {row} --run-name {row}" in s[f"pretrain-{row}"]["cmd"]
    # every run is evaluated, and the table stage reads every evaluation
    runs = [f"{r}-seed{k}" for r in base["seeded"] for k in base["extra_seeds"]] + \
        [r for r in base["rows"] if r not in first_seed_elsewhere]
    assert sorted(s["eval-zero-shot"]["foreach"]) == sorted(runs)
    deps = set(s["ablation"]["deps"])
    assert {f"results/ablation/eval/{r}.json" for r in runs} <= deps
    assert s["ablation"]["params"] == ["ablation"]
    # the one-run speed column times every recipe of the table (dense-equal-time is dense's recipe)
    assert base["speed_bench"] in deps and s["ablation-speed"]["metrics"] == [{base["speed_bench"]: {"cache": False}}]
    timed = {r for r in base["rows"] if r != "dense-equal-time"}
    assert {f"pipeline/recipes/{r}.yaml" for r in timed} <= set(s["ablation-speed"]["deps"])
    from train.ablation_bench import RECIPES
    assert set(RECIPES) == timed
    for name in ("eval-zero-shot", "eval-sparsify-off"):
        assert s[name]["do"]["params"] == stages()["eval"]["params"]


# --------------------------------------------------------------------------- studies/images/dvc.yaml

IMAGES_STUDY = REPO_ROOT / "studies" / "images" / "dvc.yaml"


def test_images_study_is_apart_trains_only_the_mixed_arm_and_reuses_the_video_only_run():
    """The study's stages live outside ./dvc.yaml (a plain `dvc repro` does not train them) and write
    nothing the default stages write; the video-only arm is the default pipeline's smaug run, and the
    image + video arm's recipe sets only the data, so the stage lists every other key it reads."""
    default, raw = stages(), yaml.safe_load(IMAGES_STUDY.read_text())["stages"]
    assert not set(default) & set(raw)
    study = {name: s.get("do", s) for name, s in raw.items()}     # a foreach stage's body is under `do`
    assert all(s["wdir"] == "../.." for s in study.values())
    outs = lambda body: {next(iter(o)) if isinstance(o, dict) else o  # noqa: E731
                         for kind in ("outs", "metrics") for o in body.get(kind, [])}
    default_outs = set().union(*(outs(s.get("do", s)) for s in default.values()))
    for name, s in study.items():
        for out in outs(s):
            assert not any(out == d or out.startswith(d.rstrip("/") + "/") for d in default_outs), (name, out)
    train = study["pretrain-smaug-images"]
    assert "--recipe smaug-images " in train["cmd"] and set(train["params"]) == keys_a_recipe_reads("smaug-images")
    assert set(load_recipe("smaug-images")["pretrain"]) == {"shards", "sources"}  # the data, nothing else
    assert {"data/shards/pretrain", "data/shards/images"} <= set(train["deps"])
    assert not any("pretrain-smaug" == name or "models/pretrain/smaug" in s.get("outs", []) for name, s in study.items())
    # the other seeds train the same recipe with pretrain.seed alone changed, under their own run names
    seeds = raw["pretrain-smaug-images-seeds"]
    assert set(seeds["do"]["params"]) == set(train["params"]) and set(seeds["do"]["deps"]) == set(train["deps"])
    assert "--run-name ${item.run}" in seeds["do"]["cmd"] and "pretrain.seed=${item.seed}" in seeds["do"]["cmd"]
    assert [v["seed"] for v in seeds["foreach"].values()] == load_yaml(DEFAULT_PARAMS)["ablation"]["extra_seeds"]
    table = study["images-vs-video"]
    assert {"results/eval/smaug.json", "results/metrics/pretrain-smaug.json"} <= set(table["deps"])
    assert study["eval-smaug-images"]["params"] == default["eval"]["params"]
    # the images shard set is the default pipeline's (cheap): generate writes it, ingest + shard make it
    assert "images" in default["shard"]["foreach"]
    assert default["ingest"]["foreach"]["images"]["videos"] == "data/raw/synthetic/stills.tar"
