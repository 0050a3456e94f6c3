"""Fine-tuning, evaluation and tables end to end on tiny real shards and tiny real models."""

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

from eval import tables as tables_mod
from train.tasks import load_task_model
from eval.config import TablesConfig
from eval.evaluate import evaluate_recipe
from train.finetune import main as finetune_main
from train.finetune import run_finetune
from train.tasks import MultipleChoice, OpenEndedQA
from pipeline.config import ConfigError, section
from tests.support import params_dict
from train.checkpoint import read_state


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finetuned(workspace):
    """smaug fine-tuned on the three tasks (3 steps each)."""
    params = workspace["params"]()
    for task in ("retrieval", "qa", "mc"):
        run_finetune(params, task, "smaug", progress=False)
    return workspace["base"] / "models/finetune/smaug"


def test_finetune_writes_loadable_task_checkpoints(finetuned):
    for task, kind in (("retrieval", None), ("qa", OpenEndedQA), ("mc", MultipleChoice)):
        state = read_state(finetuned / task)
        assert state["finished"] and state["step"] == 3 and state["task"] == task
        assert state["init"]["sha256"] == sha(finetuned.parent.parent / "pretrain/smaug/model.safetensors")
        module, _ = load_task_model(finetuned / task)
        if kind is not None:
            assert isinstance(module, kind)
    # every task's checkpoint keeps its text tower's vocabulary (QA and MC wrap the model)
    for task in ("retrieval", "qa", "mc"):
        assert (finetuned / task / "text" / "vocab.txt").is_file(), task
    # the QA vocabulary is the most frequent training answers (8 of the 12 distinct ones)
    answers = read_state(finetuned / "qa")["answers"]
    assert len(answers) == 8 and answers == sorted(answers)  # all counts tie at 1: ordered by name
    # retrieval fine-tuning dropped MLM/MVM and masking
    cfg = read_state(finetuned / "retrieval")["model_config"]
    assert cfg["objectives"]["mlm"] == 0 and cfg["masking"]["video_ratio"] == 0


def test_finetune_resumes_only_its_own_run(workspace, finetuned, capsys):
    from train.run import RunMismatch

    out = workspace["base"] / "resume-mc"
    params = workspace["params"]("finetune.mc.steps=2")
    pipeline_curve = Path(params["pretrain"]["results_dir"]) / "plots" / "finetune" / "smaug-mc.csv"
    before = pipeline_curve.read_bytes()  # the `finetuned` fixture's 3-step run wrote it
    run_finetune(params, "mc", "smaug", out=out, progress=False)
    first = sha(out / "model.safetensors")
    # a run put elsewhere (--out) keeps its loss curve beside its folder, not over the pipeline's
    curve = out.with_name("resume-mc-loss.csv").read_text().splitlines()
    assert curve[0].startswith("step") and len(curve) > 1 and pipeline_curve.read_bytes() == before
    # a finished run with the same settings is left alone
    run_finetune(params, "mc", "smaug", out=out, progress=False)
    assert "already finished" in capsys.readouterr().out and sha(out / "model.safetensors") == first
    # other settings: refused, naming the key; the run is untouched
    with pytest.raises(RunMismatch, match=r"steps: 2 -> 3.*--fresh"):
        run_finetune(workspace["params"]("finetune.mc.steps=3"), "mc", "smaug", out=out, progress=False)
    assert sha(out / "model.safetensors") == first
    # an interrupted one (finished: false) continues from its step
    state = json.loads((out / "state.json").read_text())
    state["finished"] = False
    (out / "state.json").write_text(json.dumps(state))
    run_finetune(params, "mc", "smaug", out=out, progress=False)
    assert "resuming" in capsys.readouterr().out
    assert read_state(out)["step"] == 2 and read_state(out)["finished"] is True
    # --fresh starts over with the new settings
    run_finetune(workspace["params"]("finetune.mc.steps=4"), "mc", "smaug", out=out, progress=False, fresh=True)
    assert read_state(out)["step"] == 4 and sha(out / "model.safetensors") != first


def test_finetune_as_a_stage_resumes_with_its_whole_curve_and_keeps_a_finished_run(workspace, finetuned, capsys,
                                                                                   monkeypatch):
    import os
    import signal

    from train.trainer import EXIT_INTERRUPTED, Trainer

    out = workspace["base"] / "stage-mc"
    args = ["--task", "mc", "--params", str(workspace["params_path"]), *workspace["overrides"],
            "finetune.mc.steps=4", "--out", str(out), "--as-stage", "--no-progress"]
    curve = out.with_name("stage-mc-loss.csv")
    original = Trainer.train_step

    def stop_at_2(self, micro):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, micro)

    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "train_step", stop_at_2)
        assert finetune_main(args) == EXIT_INTERRUPTED
    assert 0 < read_state(out)["step"] < 4 and not read_state(out)["finished"] and not curve.exists()
    capsys.readouterr()
    assert finetune_main(args) == 0
    assert "resuming" in capsys.readouterr().out
    steps = [int(r["step"]) for r in csv.DictReader(curve.open())]
    assert steps == [1, 2, 3, 4]  # the first session's steps too (they ride in the checkpoint)
    # DVC reran the stage without a lock entry and deleted the curve: the same run is kept, the
    # curve written again from the checkpoint
    first = sha(out / "model.safetensors")
    curve.unlink()
    assert finetune_main(args) == 0
    assert "already finished" in capsys.readouterr().out and sha(out / "model.safetensors") == first
    assert [int(r["step"]) for r in csv.DictReader(curve.open())] == [1, 2, 3, 4]


def test_finetune_cli_rejects_bad_input(workspace, capsys):
    args = ["--task", "qa", "--params", str(workspace["params_path"]), *workspace["overrides"]]
    assert finetune_main([*args, "finetune.qa.lr=-1"]) == 2
    assert "finetune.qa.lr: must be > 0" in capsys.readouterr().err
    assert finetune_main([*args, f"finetune.init_dir={workspace['base'] / 'nowhere'}"]) == 2
    assert "no checkpoint here" in capsys.readouterr().err


@pytest.fixture(scope="module")
def evaluated(workspace, finetuned):
    params = workspace["params"]()
    return {r: evaluate_recipe(params, r, workspace["overrides"]) for r in ("smaug", "dense")}


def test_evaluation_metrics(workspace, evaluated):
    smaug, dense = evaluated["smaug"], evaluated["dense"]
    assert sorted(smaug["finetuned"]) == ["mc", "qa", "retrieval"] and smaug["not_finetuned"] == []
    assert sorted(dense["zero_shot"]) == ["mc", "mc_caption", "retrieval"]  # fib: eval.qa.zero_shot_mlm only
    assert sorted(dense["not_finetuned"]) == ["mc", "qa", "retrieval"]  # mc_caption and fib are zero-shot only
    # caption multiple choice (MSRVTT-MC protocol): VTC decides, VTM beside; no shuffle pass
    cap = smaug["zero_shot"]["mc_caption"]
    assert cap["normal"]["num_questions"] == 6 and cap["normal"]["chance"] == pytest.approx(20.0)
    assert cap["normal"]["accuracy"] == cap["normal"]["accuracy_vtc"] and "accuracy_vtm" in cap["normal"]
    assert "shuffled" not in cap and cap["dataset"] == "synthetic mc_caption_test (MSRVTT-MC-style)"
    # fill-in-the-blank: the MLM head over the test file's 6 answer words
    fib = smaug["zero_shot"]["fib"]["normal"]
    assert fib["candidates"] == 6 and fib["num_questions"] == 6 and fib["majority"]["accuracy"] == pytest.approx(100 / 6, abs=1e-3)
    assert smaug["chance"]["mc_caption"] == pytest.approx(20.0) and smaug["chance"]["fib_majority"]["answer"] == "black"
    # zero-shot open-ended QA (eval.qa.zero_shot_mlm: [smaug]) reads the MLM head over the
    # classifier's answer list (vocab_size 8), without the shuffle pass
    zs_qa = smaug["zero_shot"]["qa"]["normal"]
    assert zs_qa["candidates"] == 8 and 0 <= zs_qa["accuracy"] <= 100 and "shuffled" not in smaug["zero_shot"]["qa"]
    assert zs_qa["in_vocab_fraction"] == smaug["finetuned"]["qa"]["normal"]["in_vocab_fraction"]
    r = smaug["zero_shot"]["retrieval"]
    assert r["normal"]["num_videos"] == 6 and r["normal"]["num_texts"] == 12
    for scoring in ("vtc", "vtm"):
        for d in ("t2v", "v2t"):
            m = r["normal"][scoring][d]
            assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100.0
            assert 1 <= m["MdR"] <= (6 if d == "t2v" else 11)  # 6 videos; 12 texts, 2 of them right
        assert r["normal"][scoring]["t2v"]["R@10"] == 100.0  # only 6 videos to rank
    assert smaug["chance"]["retrieval_R@1"] == pytest.approx(100 / 6, abs=1e-3)
    assert smaug["chance"]["mc"] == pytest.approx(20.0)
    # the QA majority answer: every training answer appears equally often -> alphabetically first
    assert smaug["chance"]["qa_majority"]["answer"] == "black"
    qa = smaug["finetuned"]["qa"]["normal"]
    assert sorted(qa["per_type"]) == ["color", "motion"] and qa["num_questions"] == 12
    # the shuffle test ran and reports normal - shuffled
    for setting, task in (("zero_shot", "retrieval"), ("finetuned", "qa"), ("zero_shot", "mc")):
        m = smaug[setting][task]
        assert "shuffled" in m and "shuffle_drop" in m
    drop = smaug["finetuned"]["qa"]["shuffle_drop"]["accuracy"]
    assert drop == pytest.approx(smaug["finetuned"]["qa"]["normal"]["accuracy"]
                                 - smaug["finetuned"]["qa"]["shuffled"]["accuracy"], abs=1e-3)
    # the files DVC tracks
    details = workspace["base"] / "results/eval/smaug.json"
    assert json.loads(details.read_text())["checkpoints"]["pretrain"]["sha256"] == \
        sha(workspace["base"] / "models/pretrain/smaug/model.safetensors")
    headline = json.loads((workspace["base"] / "results/metrics/eval-smaug.json").read_text())
    assert sorted(headline) == ["chance", "finetuned", "params_provenance", "zero_shot"]
    # the headline is VTC ranking; VTM re-ranking is beside it
    assert headline["zero_shot"]["retrieval"]["t2v_R@1"] == r["normal"]["vtc"]["t2v"]["R@1"]
    assert headline["zero_shot"]["retrieval"]["vtm_t2v_R@1"] == r["normal"]["vtm"]["t2v"]["R@1"]
    assert headline["zero_shot"]["retrieval"]["order_pair_acc_vtc"] == r["normal"]["order_pairs"]["vtc"]
    assert headline["finetuned"]["qa"]["shuffle_drop_accuracy"] == drop
    assert headline["chance"]["qa_majority"] == smaug["chance"]["qa_majority"]["accuracy"]
    # the fine-tuning lr is recorded as params.yaml says (rounding once made 5e-5 into 1e-4)
    recorded, written = json.loads(details.read_text())["params"]["finetune"], params_dict()["finetune"]
    assert [recorded[t]["lr"] for t in ("retrieval", "qa", "mc")] == [written[t]["lr"] for t in ("retrieval", "qa", "mc")]
    assert recorded["mc"]["lr"] == 5e-05
    curve = (workspace["base"] / "results/plots/recall/smaug-zero_shot.csv").read_text().splitlines()
    assert curve[0] == "k,t2v,v2t,t2v_shuffled,v2t_shuffled" and len(curve) == 11


def test_order_pairs_intervals_and_order_dependent_queries(evaluated):
    r = evaluated["smaug"]["zero_shot"]["retrieval"]
    pairs = r["normal"]["order_pairs"]
    # four clips of the fixture are in pairs; each is scored against its own and the swapped caption
    assert pairs["num_clips"] == 4 and pairs["num_missing"] == 0 and pairs["chance"] == 50.0
    assert pairs["vtc"] in (0.0, 12.5, 25.0, 37.5, 50.0, 62.5, 75.0, 87.5, 100.0) and "vtm" in pairs
    assert evaluated["smaug"]["chance"]["order_pairs"] == 50.0
    # the fixture's two complete pairs are also scored as pairs (Winoground's text / video / group)
    whole = pairs["pairs"]
    assert whole["num_pairs"] == 2 and whole["chance"]["text"] == 25.0
    assert all(whole[k] in (0.0, 50.0, 100.0) for k in ("text", "video", "group"))
    assert whole["group"] <= min(whole["text"], whole["video"])
    for scoring in ("vtc", "vtm"):
        t2v = r["normal"][scoring]["t2v"]
        for k in ("R@1", "R@5", "R@10"):
            low, high = t2v[f"{k}_ci95"]
            assert 0.0 <= low <= t2v[k] <= high <= 100.0
        # the shuffle test on order-dependent queries (8 captions of pair clips) apart from the rest (4)
        assert r["normal"][scoring]["t2v_order_pairs"]["num_queries"] == 8
        assert r["normal"][scoring]["t2v_other"]["num_queries"] == 4
        assert "t2v_order_pairs" in r["shuffle_drop"][scoring] and "R@1_ci95" not in r["shuffled"][scoring]["t2v"]
    assert r["normal"]["per_query"]["video"] == [v for v in range(6) for _ in range(2)]
    assert len(r["normal"]["per_query"]["vtc"]) == 12 and "per_query" not in r["shuffled"]


def test_evaluation_is_deterministic(workspace, evaluated):
    path = workspace["base"] / "results/eval/dense.json"
    before = path.read_bytes()
    evaluate_recipe(workspace["params"](), "dense", workspace["overrides"])
    assert path.read_bytes() == before


def test_more_frames_at_test_time(workspace, finetuned):
    out = evaluate_recipe(workspace["params"]("eval.num_frames=3", "eval.tasks=[retrieval]",
                                              "eval.shuffle_test=false",
                                              f"eval.metrics_dir={workspace['base'] / 'm3'}",
                                              f"eval.details_dir={workspace['base'] / 'm3'}",
                                              f"eval.plots_dir={workspace['base'] / 'm3'}"),
                          "smaug")
    assert out["zero_shot"]["retrieval"]["frames"] == 3 and "shuffled" not in out["zero_shot"]["retrieval"]


def test_sparsification_off_at_test_time_from_the_command_line_form(workspace, finetuned):
    """``eval.retrieval.sparsify=false`` (as the ablation stage passes it) reaches the evaluation
    and is recorded; a bare ``off`` is YAML's false, so it means the same (a string-valued switch
    refused it). That the encoder then keeps every token is tested in tests/model."""
    def run(flag, name):
        out = workspace["base"] / name
        return evaluate_recipe(workspace["params"](f"eval.retrieval.sparsify={flag}", "eval.tasks=[retrieval]",
                                                  "eval.shuffle_test=false", f"eval.metrics_dir={out}",
                                                  f"eval.details_dir={out}", f"eval.plots_dir={out}"), "smaug")
    off, off_word = run("false", "s_off"), run("off", "s_off2")
    assert off["params"]["eval"]["retrieval"]["sparsify"] is False
    assert off_word["params"]["eval"]["retrieval"]["sparsify"] is False
    assert off_word["zero_shot"]["retrieval"] == off["zero_shot"]["retrieval"]


def test_tables_twice_identical_and_name_checkpoints(workspace, evaluated):
    cfg = section(workspace["params"](), TablesConfig, "tables")
    written = tables_mod.write_tables(cfg, workspace["params_path"])
    first = {p: p.read_bytes() for p in written}
    assert {p.name for p in written} >= {"retrieval.md", "retrieval.csv", "qa.md", "qa.csv",
                                         "efficiency.md", "efficiency.csv", "temporal.md", "temporal.csv"}
    again = tables_mod.write_tables(cfg, workspace["params_path"])
    assert {p: p.read_bytes() for p in again} == first
    out = Path(cfg.out_dir)
    ret = (out / "retrieval.md").read_text()
    assert sha(workspace["base"] / "models/pretrain/smaug/model.safetensors") in ret
    assert "| smaug | measured | zero-shot, VTC ranking (VTM+VTC top-3 beside), 2 frames, centre square |" in ret
    smaug_row = next(r for r in csv.DictReader((out / "retrieval.csv").read_text().splitlines())
                     if r["Method"] == "smaug" and r["Setting"].startswith("zero-shot"))
    vtc = json.loads((Path(cfg.eval_dir) / "smaug.json").read_text())["zero_shot"]["retrieval"]["normal"]
    col = "synthetic ret_test (MSRVTT-style) "
    assert smaug_row[col + "R@1"] == f"{vtc['vtc']['t2v']['R@1']:.1f}"  # the headline is VTC
    assert smaug_row[col + "VTM re-rank R@1"] == f"{vtc['vtm']['t2v']['R@1']:.1f}"
    assert smaug_row[col + "R@1 95% CI"].startswith("[") and " / " in smaug_row[col + "Order-pair acc VTC / VTM"]
    assert "| ALPRO | reported (Li et al., CVPR 2022) |" in ret
    assert "synthetic ret_test (MSRVTT-style) R@1" in ret and "MSRVTT (1k-A) R@1" in ret
    assert "chance (6 test videos)" in ret
    qa = (out / "qa.md").read_text()
    assert "| smaug | measured | zero-shot, MLM head over 8 answers, 2 frames, centre square |" in qa
    assert "MSRVTT-QA acc" in qa and "synthetic qa_test (MSRVTT-QA-style) acc" in qa
    cap_col, fib_col = "synthetic mc_caption_test (MSRVTT-MC-style) acc", "synthetic fib_test (LSMDC-FiB-style) acc"
    zs = next(r for r in csv.DictReader((out / "qa.csv").read_text().splitlines())
              if r["Method"] == "smaug" and r["Setting"].startswith("zero-shot"))
    cap = json.loads((Path(cfg.eval_dir) / "smaug.json").read_text())["zero_shot"]["mc_caption"]["normal"]
    assert zs[cap_col] == f"{cap['accuracy_vtc']:.1f} (VTM {cap['accuracy_vtm']:.1f})" and zs[fib_col] != "–"
    assert "Caption multiple choice (MSRVTT-MC protocol" in qa
    # the chance row carries the majority answer's accuracy even though the first recipe in
    # name order (dense) was not fine-tuned and so has no open-ended QA of its own
    rows = list(csv.DictReader((out / "qa.csv").read_text().splitlines()))
    chance = next(r for r in rows if r["Method"] == "chance")
    smaug = json.loads((Path(cfg.eval_dir) / "smaug.json").read_text())
    majority = smaug["chance"]["qa_majority"]
    assert chance["synthetic qa_test (MSRVTT-QA-style) acc"] == f"{majority['accuracy']:.1f}"
    assert f"('{majority['answer']}')" in chance["Setting"]
    # no pre-training cost files in this workspace: the efficiency table says which are missing
    eff = (out / "efficiency.md").read_text()
    assert "no pre-training cost file" in eff and "pretrain-smaug.json" in eff
    assert "No throughput benchmark" in eff
    temporal = (out / "temporal.csv").read_text().splitlines()
    assert temporal[0] == "Method,Setting,Task,Dataset,Metric,In order,Shuffled,Drop" and len(temporal) > 4
    assert "t2v R@1, order-pair clips' captions" in (out / "temporal.md").read_text()
    assert "order-pair acc (VTC, chance 50)" in (out / "temporal.md").read_text()
    assert not (out / "claim.md").exists()  # the claim needs seeds: eval.ablation writes it
    # tables for people: results and one line to the provenance; the params live in provenance.json
    for name in ("retrieval", "qa", "qa_per_type", "efficiency", "temporal"):
        md = (out / f"{name}.md").read_text()
        assert '"finetune"' not in md and "params (sha256" not in md, name
        assert md.rstrip().splitlines()[-1].startswith("Provenance: ") and "provenance.md" in md
    record = json.loads((out / "provenance.json").read_text())
    assert record["runs"]["smaug"]["params"]["eval"]["retrieval"]["rerank_k"] == 3
    assert record["runs"]["smaug"]["checkpoints"]["pretrain"]["sha256"] == \
        sha(workspace["base"] / "models/pretrain/smaug/model.safetensors")
    assert "sha256" in record["runs"]["smaug"]["params_provenance"]
    assert record["runs"]["smaug"]["checkpoints"]["pretrain"]["sha256"] in (out / "provenance.md").read_text()
    assert Path(cfg.cost_plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_refuse_results_the_params_did_not_make(workspace, evaluated, tmp_path):
    import yaml

    from pipeline.provenance import ProvenanceError

    cfg = section(workspace["params"](), TablesConfig, "tables")
    changed = yaml.safe_load(workspace["params_path"].read_text())
    changed["eval"]["max_len"] = 12  # a key the eval stage reads (and the workspace does not override)
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(changed))
    with pytest.raises(ProvenanceError, match=r"results/eval/dense\.json: made by other params than .*: "
                                              r"eval \(file [0-9a-f]{16}, params [0-9a-f]{16}\)"):
        tables_mod.write_tables(cfg, other)
    changed["tables"]["decimals"] = 2  # a key no input's stage reads: nothing to refuse
    changed["eval"]["max_len"] = None
    other.write_text(yaml.safe_dump(changed))
    tables_mod.write_tables(cfg, other)


def test_tables_show_the_runs_named_and_refuse_a_missing_one(workspace, evaluated, tmp_path):
    """tables.runs (params.yaml: smaug, the one run of the default pipeline) keeps a run that
    another stage evaluated into the same folder out of the tables; a named run with no evaluation
    stops the program, naming the file, before any table is written."""
    cfg = section(workspace["params"](f"tables.out_dir={tmp_path / 'one'}", "tables.runs=[smaug]",
                                      f"tables.cost_plot={tmp_path / 'one.png'}"), TablesConfig, "tables")
    tables_mod.write_tables(cfg, workspace["params_path"])
    methods = {r["Method"] for r in csv.DictReader((tmp_path / "one" / "retrieval.csv").read_text().splitlines())}
    assert "smaug" in methods and "dense" not in methods
    assert list(json.loads((tmp_path / "one" / "provenance.json").read_text())["runs"]) == ["smaug"]
    both = section(workspace["params"](f"tables.out_dir={tmp_path / 'both'}", "tables.runs=[smaug,dense]",
                                       f"tables.cost_plot={tmp_path / 'both.png'}"), TablesConfig, "tables")
    tables_mod.write_tables(both, workspace["params_path"])
    methods = {r["Method"] for r in csv.DictReader((tmp_path / "both" / "retrieval.csv").read_text().splitlines())}
    assert {"smaug", "dense"} <= methods
    missing = section(workspace["params"](f"tables.out_dir={tmp_path / 'none'}", "tables.runs=[smaug,nosuch]"),
                      TablesConfig, "tables")
    with pytest.raises(ValueError, match=r"tables\.runs: no evaluation .*nosuch\.json"):
        tables_mod.write_tables(missing, workspace["params_path"])
    assert not (tmp_path / "none").exists()
    with pytest.raises(ConfigError, match="runs"):
        section(workspace["params"]("tables.runs=[smaug,smaug]"), TablesConfig, "tables")


class MeanPooled(torch.nn.Module):
    """A model that ignores time: per-frame features averaged over frames."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.frame = torch.nn.Linear(3 * 32 * 32, 16)
        self.text = torch.nn.Embedding(31000, 16)
        self.vtm_head = torch.nn.Identity()  # it scores pairs (vtm_score below)

    def encode_video(self, video, mask=False, sparsify=True):
        tokens = self.frame(video.flatten(2))                  # [B, T, 16]
        feat = torch.nn.functional.normalize(tokens.mean(1), dim=-1)
        return tokens.mean(1, keepdim=True), feat

    def encode_text(self, ids, mask):
        hidden = self.text(ids)
        return hidden, torch.nn.functional.normalize(hidden[:, 0] + hidden[:, 1], dim=-1)

    def fuse(self, hidden, mask, tokens):
        return hidden + tokens.mean(1, keepdim=True)

    def vtm_score(self, fused):
        return fused[:, 0].sum(-1)


def test_shuffle_test_drop_is_zero_for_a_model_that_ignores_time(workspace, shard_root):
    from train.checkpoint import load_model
    from train.data import build_loader
    from train.data.text import load_tokenizer

    from eval.evaluate import with_shuffle
    from eval.retrieval import embed_retrieval_set, evaluate_retrieval

    params = workspace["params"]("loader.num_frames=4")
    from train.checkpoint import loader_config_of

    loader_cfg = loader_config_of({}, params, num_frames=4, batch_size=3)
    batches = list(build_loader(loader_cfg, shard_root / "ret_test", train=False, seed=0))
    tok = load_tokenizer()
    flat = MeanPooled()
    res = with_shuffle(lambda s: {k: v for k, v in evaluate_retrieval(flat, batches, tok, max_len=16, rerank_k=2,
                                                                    shuffle_seed=s).items()
                                  if k not in ("curve", "embeddings")},
                       True, seed=0)
    assert res["shuffle_drop"]["vtc"]["t2v"]["R@1"] == 0.0 and res["shuffle_drop"]["vtm"]["v2t"]["MnR"] == 0.0
    # the real model reads frame order: its video features change when the frames are shuffled
    model, _ = load_model(workspace["base"] / "models/pretrain/smaug")
    a = embed_retrieval_set(model, batches, tok, max_len=16)
    b = embed_retrieval_set(model, batches, tok, max_len=16, shuffle_seed=0)
    assert not torch.allclose(a.video_feats, b.video_feats, atol=1e-4)
    assert torch.allclose(a.text_feats, b.text_feats)


def test_finetune_owns_its_stop_signals_from_the_start(workspace, tmp_path):
    """SIGTERM to the process group of `python -m train.finetune` as soon as it starts: exit 75
    with nothing lost (no step was done, nothing half-written), and the rerun does the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pipeline.config import REPO_ROOT

    def catches_sigterm(pid: int) -> bool:
        status = open(f"/proc/{pid}/status").read()
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        return bool(caught & (1 << (signal.SIGTERM - 1)))

    out = tmp_path / "ft-mc"
    cmd = [sys.executable, "-m", "train.finetune", "--task", "mc", "--recipe", "smaug", "--no-progress",
           "--params", str(workspace["params_path"]), "--out", str(out), *workspace["overrides"]]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while not catches_sigterm(proc.pid):  # the program's first lines, before torch is imported
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "run.log").read_text()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = (tmp_path / "run.log").read_text()
    assert code == 75, text
    assert "interrupted: stopped by SIGTERM at step 0" in text, text
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert read_state(out)["step"] == 3 and read_state(out)["finished"] is True


@pytest.fixture(scope="module")
def evaluated_with_qa_study(workspace, evaluated):
    """smaug evaluated again with the QA study too (the default studies retrieval only)."""
    extra = ["eval.ensemble_study.tasks=[retrieval, qa]", *(f"eval.{d}_dir={workspace['base'] / 'mq' / d}"
                                                           for d in ("details", "metrics", "plots"))]
    out = evaluate_recipe(workspace["params"](*extra), "smaug", [*workspace["overrides"], *extra])
    return {"smaug": out, "dense": evaluated["dense"], "default_study": evaluated["smaug"]["frame_ensembles"]}


def test_frame_ensemble_study_and_its_table(workspace, evaluated_with_qa_study, tmp_path):
    """eval.ensemble_study (default: smaug, concat/mean/max/lse on 8 frames) is in the details
    file and in tables/ensembles.md beside the main evaluation (the training count, 2 frames)."""
    default = evaluated_with_qa_study["default_study"]
    assert {m: sorted(s) for m, s in default["modes"].items()} == {m: ["zero_shot"] for m in ("concat", "lse", "max", "mean")}
    evaluated = evaluated_with_qa_study
    study = evaluated["smaug"]["frame_ensembles"]
    assert "frame_ensembles" not in evaluated["dense"] and study["frames"] == 8
    assert sorted(study["modes"]) == ["concat", "lse", "max", "mean"]
    for mode, settings in study["modes"].items():
        assert sorted(settings) == ["finetuned", "zero_shot"]
        r, q = settings["zero_shot"]["retrieval"], settings["finetuned"]["qa"]
        assert r["frames"] == q["frames"] == 8 and "shuffled" not in r
        assert r["frames_ensemble"]["groups"] == (1 if mode == "concat" else 4)
        assert ("order_pairs" in r["normal"]) == (mode == "concat")
    cfg = section(workspace["params"](f"tables.out_dir={tmp_path}", f"tables.eval_dir={workspace['base'] / 'mq' / 'details'}"),
                  TablesConfig, "tables")
    tables_mod.write_tables(cfg, workspace["params_path"], check=False)  # the file carries other params now
    rows = list(csv.DictReader((Path(cfg.out_dir) / "ensembles.csv").read_text().splitlines()))
    ret = [r for r in rows if r["Task"] == "retrieval"]
    assert [r["Ensemble"] for r in ret] == ["none (as evaluated)", "concat", "mean of 4 groups", "max of 4 groups",
                                           "lse of 4 groups, tau 0.1"]
    assert ret[0]["Test frames"] == "2" and ret[0]["Change"] == "–"
    base = evaluated["smaug"]["zero_shot"]["retrieval"]["normal"]["vtc"]["t2v"]["R@1"]
    mean = study["modes"]["mean"]["zero_shot"]["retrieval"]["normal"]["vtc"]["t2v"]["R@1"]
    assert ret[2]["Score"] == f"{mean:.1f}" and ret[2]["Change"] == f"{mean - base:+.1f}"
    assert [r["Setting"] for r in rows if r["Task"] == "qa"] == ["fine-tuned"] * 5


def test_main_evaluation_with_a_frame_ensemble(workspace, finetuned):
    out = evaluate_recipe(workspace["params"]("eval.frames_ensemble=lse", "eval.ensemble_frames=4",
                                              "eval.tasks=[retrieval, mc]", "eval.shuffle_test=false",
                                              "eval.recipes=[dense]", "eval.ensemble_study.recipes=[]",
                                              f"eval.metrics_dir={workspace['base'] / 'me'}",
                                              f"eval.details_dir={workspace['base'] / 'me'}",
                                              f"eval.plots_dir={workspace['base'] / 'me'}"),
                          "dense")
    for task in ("retrieval", "mc"):
        m = out["zero_shot"][task]
        assert m["frames"] == 4 and m["frames_ensemble"] == {
            "mode": "lse", "groups": 2, "label": "lse of 2 groups, tau 0.1", "frames_per_group": 2, "temperature": 0.1}
    assert "order_pairs_skipped" in out["zero_shot"]["retrieval"]["normal"]
    with pytest.raises(ValueError, match="ensemble_frames=5 is not a multiple"):
        evaluate_recipe(workspace["params"]("eval.frames_ensemble=mean", "eval.ensemble_frames=5",
                                            "eval.tasks=[retrieval]", "eval.ensemble_study.recipes=[]",
                                            f"eval.details_dir={workspace['base'] / 'me5'}"), "dense")


def zero_shot_retrieval_on(workspace, shards, out: Path) -> dict:
    """smaug's zero-shot retrieval metrics on other test shards, its outputs under ``out``."""
    return evaluate_recipe(workspace["params"](f"eval.retrieval.shards={shards}", "eval.tasks=[retrieval]",
                                              "eval.retrieval.order_pairs=null", "eval.shuffle_test=false",
                                              f"eval.metrics_dir={out}", f"eval.details_dir={out}",
                                              f"eval.plots_dir={out}"), "smaug")["zero_shot"]["retrieval"]


def test_a_test_clip_that_cannot_be_read_is_named_in_the_results(workspace, shard_root, tmp_path):
    """A broken test clip is left out of the numbers (the loader skips it), and the results say
    so: how many and which, so a table over fewer clips than the test set holds is not silent."""
    import io
    import tarfile

    broken = tmp_path / "ret_test"
    broken.mkdir()
    with tarfile.open(shard_root / "ret_test" / "shard-000000.tar") as old, \
            tarfile.open(broken / "shard-000000.tar", "w") as new:
        for m in old.getmembers():
            data = old.extractfile(m).read()
            if m.name == "clip_ret_test_005.mp4":
                data = data[: len(data) // 4]  # truncated: its frames cannot be decoded
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))

    def run(shards, name):
        return zero_shot_retrieval_on(workspace, shards, tmp_path / name)

    clean, with_broken = run(shard_root / "ret_test", "clean"), run(broken, "broken")
    assert "skipped_samples" not in clean and clean["normal"]["num_videos"] == 6
    assert with_broken["normal"]["num_videos"] == 5
    assert with_broken["skipped_samples"] == 1
    [[key, reason]] = with_broken["skipped_keys"]
    assert key == "clip_ret_test_005" and reason
    on_disk = json.loads((tmp_path / "broken" / "smaug.json").read_text())
    assert on_disk["zero_shot"]["retrieval"]["skipped_keys"] == [[key, reason]]
    # and the table built from it says so
    for name in ("clean", "broken"):
        cfg = section(workspace["params"](f"tables.eval_dir={tmp_path / name}", "tables.runs=[smaug]",
                                          f"tables.out_dir={tmp_path / name / 'tables'}",
                                          f"eval.retrieval.shards={broken if name == 'broken' else shard_root / 'ret_test'}",
                                          "eval.tasks=[retrieval]", "eval.retrieval.order_pairs=null",
                                          "eval.shuffle_test=false", f"eval.metrics_dir={tmp_path / name}",
                                          f"eval.details_dir={tmp_path / name}", f"eval.plots_dir={tmp_path / name}"),
                      TablesConfig, "tables")
        tables_mod.write_tables(cfg, check=False)
    note = "smaug, zero-shot retrieval on"
    assert note not in (tmp_path / "clean" / "tables" / "retrieval.md").read_text()
    text = (tmp_path / "broken" / "tables" / "retrieval.md").read_text()
    assert f"1 test sample(s) could not be read and are not in these numbers (first: {key} (" in text


def test_qa_baseline_comes_from_the_fine_tuned_checkpoints_answers(workspace, evaluated, shard_root, tmp_path):
    """The chance row reads the answers the fine-tuned QA checkpoint trained on, not whatever
    finetune.qa.shards says when evaluating (on one's own data: the synthetic set, or nothing)."""
    from eval.evaluate import check_inputs
    from eval.config import EvalConfig

    out = tmp_path / "ev"
    params = workspace["params"](f"finetune.qa.shards={shard_root / 'ret_train'}",  # captions, no answers
                                 "eval.tasks=[qa]", f"eval.metrics_dir={out}", f"eval.details_dir={out}",
                                 f"eval.plots_dir={out}")
    check_inputs(params, section(params, EvalConfig, "eval"), ["smaug"], recipes_from="eval.recipes")
    got = evaluate_recipe(params, "smaug", [])["chance"]["qa_majority"]
    assert got == evaluated["smaug"]["chance"]["qa_majority"] and got["accuracy"] > 0
    # without a fine-tuned QA checkpoint finetune.qa.shards is what is read; when it is missing
    # the hint must not offer the very task that lacks data
    params = workspace["params"](f"finetune.qa.shards={tmp_path / 'nowhere'}", "eval.tasks=[retrieval,qa]")
    with pytest.raises(ConfigError) as err:
        check_inputs(params, section(params, EvalConfig, "eval"), ["dense"], recipes_from="--recipe")
    assert "nowhere" in str(err.value) and "eval.tasks=[retrieval]" in str(err.value)


def test_a_fine_tuned_checkpoint_records_the_loader_it_trained_with(workspace, tmp_path):
    """Fine-tuning takes its init's loader (frame size, frames, text length); evaluation and
    search must rebuild that one, not the fine-tuning command's `loader:` settings."""
    from train.checkpoint import loader_config_of

    params = workspace["params"]("loader.image_size=48", "loader.num_frames=4",
                                 f"finetune.out_dir={tmp_path / 'ft'}")
    run_finetune(params, "retrieval", "smaug", progress=False)
    state = read_state(tmp_path / "ft" / "smaug" / "retrieval")
    cfg = loader_config_of(state, params, num_frames=None, batch_size=1)
    pre = loader_config_of(read_state(workspace["base"] / "models/pretrain/smaug"), {}, num_frames=None,
                           batch_size=1)
    assert (cfg.image_size, cfg.num_frames, cfg.max_len) == (pre.image_size, pre.num_frames, pre.max_len)
    assert (cfg.image_size, cfg.num_frames) != (48, 4)


def write_stats(folder: Path, rows: list[tuple[str, str, str | None]]) -> None:
    import pandas as pd

    pd.DataFrame(rows, columns=["key", "status", "error"]).to_parquet(folder / "stats.parquet")


def test_test_videos_lost_to_a_cut_shard_or_to_preprocessing_are_named(workspace, shard_root, tmp_path):
    """stats.parquet says which test videos preprocessing wrote and which failed; a shard cut
    short loses the samples after the cut without a per-sample error. Both are named."""
    import shutil
    import tarfile

    keys = [f"clip_ret_test_{n:03d}" for n in range(6)]
    rows = [(k, "ok", None) for k in keys] + [("clip_ret_test_006", "failed", "too short (1 frame)")]

    def run(folder, name):
        return zero_shot_retrieval_on(workspace, folder, tmp_path / name)

    clean = tmp_path / "clean"
    shutil.copytree(shard_root / "ret_test", clean)
    # a duplicate annotation row that failed beside the video's ok row: the video was evaluated
    write_stats(clean, rows[:6] + [(keys[2], "failed", "duplicate row: same video and text")])
    assert "test_set" not in run(clean, "ev_clean")  # nothing missing: the results file is as before

    cut = tmp_path / "cut"
    shutil.copytree(shard_root / "ret_test", cut)
    write_stats(cut, rows)
    tar = cut / "shard-000000.tar"
    with tarfile.open(tar) as t:
        member = next(m for m in t.getmembers() if m.name == "clip_ret_test_003.mp4")
    with tar.open("r+b") as f:
        f.truncate(member.offset_data + member.size // 2)  # inside the fourth video
    got = run(cut, "ev_cut")
    seen = got["normal"]["num_videos"]
    assert seen == 3
    test_set = got["test_set"]
    assert test_set["annotated_videos"] == 7 and test_set["written_videos"] == 6
    assert test_set["evaluated_videos"] == 3 and test_set["unseen_keys"] == keys[3:]
    assert test_set["failed_preprocessing"] == 1 and test_set["failed_keys"] == ["clip_ret_test_006"]
    # and the retrieval table says so under the numbers
    out = tmp_path / "ev_cut"
    cfg = section(workspace["params"](f"tables.eval_dir={out}", "tables.runs=[smaug]", f"tables.out_dir={out / 'tables'}",
                                      f"eval.retrieval.shards={cut}", "eval.tasks=[retrieval]",
                                      "eval.retrieval.order_pairs=null", "eval.shuffle_test=false",
                                      f"eval.metrics_dir={out}", f"eval.details_dir={out}", f"eval.plots_dir={out}"),
                  TablesConfig, "tables")
    tables_mod.write_tables(cfg, check=False)
    text = (out / "tables" / "retrieval.md").read_text()
    assert "3 of the 6 test videos preprocessing wrote were not evaluated (first: clip_ret_test_003" in text
    assert "1 of the 7 annotated test videos failed preprocessing (first: clip_ret_test_006" in text


def test_results_that_cannot_be_written_name_the_file_and_leave_no_temp(workspace, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the results folder should be")
    params = workspace["params"]("eval.tasks=[retrieval]", "eval.retrieval.order_pairs=null",
                                 "eval.shuffle_test=false", f"eval.details_dir={blocked / 'eval'}",
                                 f"eval.metrics_dir={tmp_path / 'm'}", f"eval.plots_dir={tmp_path / 'p'}")
    with pytest.raises(OSError, match=r"not-a-folder/eval/smaug\.json: not written") as err:
        evaluate_recipe(params, "smaug", [])
    assert "eval.details_dir" in str(err.value)
    assert not list(tmp_path.rglob(".*.tmp"))


def test_ctrl_c_in_evaluation_is_one_line_and_the_shells_status(workspace, finetuned, tmp_path, capsys, monkeypatch):
    from eval import evaluate as evaluate_mod

    out = tmp_path / "ev"
    args = ["--params", str(workspace["params_path"]), *workspace["overrides"], "--recipe", "smaug",
            "eval.tasks=[retrieval]", f"eval.metrics_dir={out}", f"eval.details_dir={out}", f"eval.plots_dir={out}"]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_mod, "evaluate_recipe", interrupted)
    assert evaluate_mod.main(args) == 130  # it was a traceback and 1, the status of a machine fault
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("interrupted: ")


def test_test_texts_cut_at_max_len_are_named(shard_root, caplog):
    """Evaluation warns when the loader cuts many test captions (pre-training did already; the
    second-style audit found 66 of 100 test queries cut without a word at evaluation)."""
    import logging

    from eval.evaluate import BatchCache, warn_unread_texts
    from train.data import LoaderConfig

    caplog.set_level(logging.WARNING, logger="eval.evaluate")
    cache = BatchCache(seed=0)
    cache.get(LoaderConfig(num_workers=0, batch_size=4, max_len=4), str(shard_root / "ret_test"), "caption")
    said = [r.getMessage() for r in caplog.records if "test texts of" in r.getMessage()]
    assert len(said) == 1 and "6 of 6 texts (100%) are longer than loader.max_len=4" in said[0], said
    caplog.clear()
    cache.get(LoaderConfig(num_workers=0, batch_size=4, max_len=32), str(shard_root / "ret_test"), "caption")
    assert not [r for r in caplog.records if "test texts of" in r.getMessage()]
    assert warn_unread_texts(["a red circle moves"] * 3, None, 32, "x") == []
