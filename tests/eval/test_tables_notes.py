"""The notes and chance rows of the retrieval and QA tables, on hand-made evaluation records:
the "built-in synthetic benchmark" wording only for the built-in test sets, and the order-pair
chance only where order pairs were measured (audit 2026-12-04, finding 10)."""

from eval.config import EvalConfig, TablesConfig
from eval.tables import DASH, qa_tables, retrieval_table

BUILTIN = EvalConfig()
SYNTHETIC_WORDING = "built-in synthetic benchmark"


def retrieval_metrics(dataset: str, order_pairs: bool) -> dict:
    t2v = {"R@1": 10.0, "R@5": 40.0, "R@10": 70.0, "MdR": 3.0}
    normal = {"vtc": {"t2v": t2v}, "num_videos": 10}
    if order_pairs:
        normal["order_pairs"] = {"vtc": 55.0}
    return {"dataset": dataset, "normal": normal, "frames": 4}


def eval_record(tmp_path, *, retrieval: tuple[str, str] | None = None, qa: tuple[str, str] | None = None,
                order_pairs: bool = True) -> dict:
    """An eval.evaluate record with a zero-shot retrieval and / or a fine-tuned QA result, each
    given as (dataset name, test shards), with the params that made it."""
    params = {"eval": {"retrieval": {"rerank_k": 0, "dataset": BUILTIN.retrieval.dataset,
                                     "shards": BUILTIN.retrieval.shards},
                       "qa": {"dataset": BUILTIN.qa.dataset, "shards": BUILTIN.qa.shards}}}
    ck = {"path": "models/x", "sha256": "0" * 64}
    record = {"recipe": "mine", "params": params, "_file": str(tmp_path / "mine.json"),
              "checkpoints": {"pretrain": ck, "finetune_qa": ck}, "zero_shot": {}, "finetuned": {}}
    if retrieval:
        params["eval"]["retrieval"].update(dataset=retrieval[0], shards=retrieval[1])
        record["zero_shot"]["retrieval"] = retrieval_metrics(retrieval[0], order_pairs)
    if qa:
        params["eval"]["qa"].update(dataset=qa[0], shards=qa[1])
        record["finetuned"]["qa"] = {"dataset": qa[0], "normal": {"accuracy": 30.0}, "frames": 4}
    return record


def tables_config(tmp_path) -> TablesConfig:
    return TablesConfig(metrics_dir=str(tmp_path / "metrics"), reference_rows=False)


def notes_on(table, dataset: str) -> list[str]:
    return [n for n in table.notes if n.startswith(f"'{dataset}'")]


def chance_order_pair_cell(table, dataset: str) -> str:
    chance = next(row for row in table.rows if row[0].startswith("chance"))
    return chance[table.columns.index(f"{dataset} Order-pair acc VTC / VTM")]


def test_builtin_synthetic_test_sets_keep_the_synthetic_wording(tmp_path):
    e = eval_record(tmp_path, retrieval=(BUILTIN.retrieval.dataset, BUILTIN.retrieval.shards),
                    qa=(BUILTIN.qa.dataset, BUILTIN.qa.shards))
    (note,) = notes_on(retrieval_table([e], tables_config(tmp_path)), BUILTIN.retrieval.dataset)
    assert SYNTHETIC_WORDING in note
    (note,) = notes_on(qa_tables([e], tables_config(tmp_path))[0], BUILTIN.qa.dataset)
    assert SYNTHETIC_WORDING in note


def test_own_data_is_not_called_the_synthetic_benchmark(tmp_path):
    e = eval_record(tmp_path, retrieval=("mine", "runs/mine/shards/test"), qa=("minemc", "runs/mine/shards/qa_test"))
    (note,) = notes_on(retrieval_table([e], tables_config(tmp_path)), "mine")
    assert SYNTHETIC_WORDING not in note
    assert "`runs/mine/shards/test`" in note and "not comparable with the published columns" in note
    (note,) = notes_on(qa_tables([e], tables_config(tmp_path))[0], "minemc")
    assert SYNTHETIC_WORDING not in note and "`runs/mine/shards/qa_test`" in note


def test_own_data_under_the_synthetic_name_is_told_to_name_it(tmp_path):
    """eval.retrieval.dataset forgotten: own shards under the synthetic set's name."""
    e = eval_record(tmp_path, retrieval=(BUILTIN.retrieval.dataset, "runs/mine/shards/test"))
    (note,) = notes_on(retrieval_table([e], tables_config(tmp_path)), BUILTIN.retrieval.dataset)
    assert "is this repository's built-in synthetic benchmark" not in note
    assert "`runs/mine/shards/test`" in note and "eval.retrieval.dataset" in note


def test_order_pair_chance_only_where_order_pairs_were_measured(tmp_path):
    measured = eval_record(tmp_path, retrieval=("mine", "runs/mine/shards/test"), order_pairs=True)
    assert chance_order_pair_cell(retrieval_table([measured], tables_config(tmp_path)), "mine") == "50.0"
    # eval.retrieval.order_pairs=null: the measured row has a dash, and so has its chance
    unmeasured = eval_record(tmp_path, retrieval=("mine", "runs/mine/shards/test"), order_pairs=False)
    table = retrieval_table([unmeasured], tables_config(tmp_path))
    measured_row = next(row for row in table.rows if row[1] == "measured")
    assert measured_row[table.columns.index("mine Order-pair acc VTC / VTM")] == DASH
    assert chance_order_pair_cell(table, "mine") == DASH


def test_clips_seen_counts_the_short_batches_of_a_small_collection(tmp_path):
    """10 steps of 16 over a collection whose epochs end in short batches: the loader gave 150
    clips, not 160, and the efficiency table (clips and PFLOPs) says 150; a run without the
    count falls back to steps x batch."""
    import json

    from eval.tables import efficiency_table

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    cost = {"recipe": "mine", "steps": 10, "clips_per_step": 16, "train_wall_s": 36.0, "threads": 2,
            "device": "cpu", "flops_per_clip": 1e13, "clips_per_s": 4.0}
    (metrics / "pretrain-mine.json").write_text(json.dumps({**cost, "samples_per_source": {"shards": 150}}))
    (metrics / "pretrain-old.json").write_text(json.dumps(cost))
    table = efficiency_table([], tables_config(tmp_path))
    rows = {row[0]: dict(zip(table.columns, row)) for row in table.rows}
    assert rows["mine"]["Clips seen"] == "150" and rows["mine"]["Train PFLOPs"] == "1.500"
    assert rows["old"]["Clips seen"] == "160" and rows["old"]["Train PFLOPs"] == "1.600"
