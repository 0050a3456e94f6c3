"""Evaluate pre-trained (zero-shot) and fine-tuned checkpoints; write the metrics files.

    python -m eval.evaluate [--recipe smaug ...] [--params params.yaml] [key.path=value ...]

For every recipe in ``eval.recipes`` this writes ``results/eval/<recipe>.json`` (everything
below) and ``results/metrics/eval-<recipe>.json`` (the headline numbers for ``dvc metrics show``):

* ``zero_shot``: retrieval (VTC ranking, the headline, and beside it VTM re-ranking of the top
  ``eval.retrieval.rerank_k``; 95% bootstrap intervals of t2v R@K over test videos; order-pair
  accuracy from ``eval.retrieval.order_pairs``, and t2v metrics of the order-dependent queries
  apart from the rest) and multiple choice by VTM, straight from ``models/pretrain/<recipe>``;
* ``finetuned``: retrieval, open-ended QA and multiple choice from
  ``models/finetune/<recipe>/<task>`` (a task without a fine-tuned checkpoint is listed in
  ``not_finetuned``); zero-shot open-ended QA reads the pre-trained MLM head instead of a
  classifier (eval/mlm_qa.py) for the recipes in ``eval.qa.zero_shot_mlm``; the zero-shot-only
  tasks, when ``eval.tasks`` lists them: ``mc_caption`` (MSRVTT-MC protocol: each test clip's
  candidate captions ranked by VTC, VTM beside; eval/caption_choice.py) and ``fib`` (LSMDC-FiB:
  the MLM head fills the blank over the test file's answer words, for the recipes in
  ``eval.qa.zero_shot_mlm``);
* ``frame_ensembles`` (recipes in ``eval.ensemble_study.recipes``): each test-time frame
  ensemble (eval/ensemble.py) on ``ensemble_study.frames`` frames; ``eval.frames_ensemble``
  applies one to the whole evaluation; ``protocol``: a preset's card check (``--preset``);
* ``skipped_samples`` / ``skipped_keys`` in a task's metrics, only when the loader skipped test
  samples it could not read (an undecodable clip, a sample without the task's text): how many,
  and the first ones as [key, reason]; the numbers then cover fewer clips than the test set holds;
* ``chance``: R@1 chance (100 / test videos), the QA majority-answer baseline, MC chance;
* with ``eval.shuffle_test`` every evaluation is repeated with the frames of each clip in a
  fixed shuffled order (HiTeA) and ``shuffle_drop`` = normal - shuffled is reported;
* ``checkpoints``: path + sha256 of each model.safetensors used, ``params``: the settings,
  ``params_provenance``: the hash of the params keys this stage reads (pipeline/provenance.py).

and ``results/plots/recall/<recipe>-<setting>.csv`` (R@K for K = 1..10) for ``dvc plots``.
``--run-dir DIR`` reads the checkpoints from and writes these files under DIR instead (a run on
one's own data, apart from the committed results). Before any work it checks that every recipe
has a checkpoint and every task in ``eval.tasks`` its shards (an error names the key to change);
both files are rewritten after each task (``pending`` lists what is still to come), so a later
failure loses nothing; at the end it prints each recipe's headline numbers and the two paths.
Evaluation is deterministic: fixed frame positions, candidates sorted by key, fixed
shuffle permutations, and floats rounded to 4 decimals in the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from eval.config import ZERO_SHOT_TASKS, EvalConfig
from eval.ensemble import FrameEnsemble
from eval.shuffle import shuffle_drop
from pipeline import cli
from pipeline.config import ConfigError, load_params, section, to_dict, top_level_seed
from pipeline.provenance import EVAL_KEYS, FIELD, stamp
from train.checkpoint import fingerprint, loader_config_of, model_config_of, resolve_checkpoint
from train.config import FinetuneConfig
from train.tasks import load_task_model

log = logging.getLogger(__name__)
SKIPPED_KEYS_KEPT = 50  # how many skipped test samples a results file names

LOADER_TEXT = {"retrieval": "caption", "qa": "question", "mc": "question", "mc_caption": "caption", "fib": "question"}


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded for a stable metrics file (same checkpoint -> same bytes)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def warn_unread_texts(texts: list[str], tokenizer_path, max_len: int, what: str) -> list[str]:
    """Warn (and return the warnings) when the text tower cannot read many test texts or the
    loader cuts many at ``max_len`` tokens: a query cut to its first words is ranked on them
    alone, without any error. Pre-training checks its captions the same way (train.pretrain)."""
    from train.data.text import load_tokenizer, truncation_warning, unknown_token_warning

    try:
        tokenizer = load_tokenizer(tokenizer_path)
        found = [w for w in (unknown_token_warning(tokenizer, texts), truncation_warning(tokenizer, texts, max_len))
                 if w]
    except Exception as err:  # a check, never a reason to stop an evaluation
        log.warning("test text check skipped: %r", err)
        return []
    for warning in found:
        log.warning("test texts of %s: %s", what, warning)
    return found


class BatchCache:
    """Decoded test batches, kept so normal / shuffled / zero-shot / fine-tuned passes
    decode each test set once. Evaluation batches are deterministic (middle frames), so
    reusing them changes nothing but the time."""

    def __init__(self, seed: int, enabled: bool = True, tokenizer_path=None, view: str = "centre"):
        # One recipe's checkpoints share its text tower, so its vocabulary (None: the default).
        self.seed, self.enabled, self.tokenizer_path, self.view = seed, enabled, tokenizer_path, view
        self._store: dict[tuple, list[dict]] = {}
        self._skipped: dict[tuple, list] = {}
        self._loaders: dict[tuple, Any] = {}

    def get(self, loader_cfg, shards: str, text: str):
        from train.data import build_loader

        key = (repr(loader_cfg), shards, text)
        if key in self._store:
            return self._store[key]
        loader = build_loader(loader_cfg, shards, train=False, text=text, seed=self.seed,
                              tokenizer_path=self.tokenizer_path, view=self.view)
        if not self.enabled:
            self._loaders[key] = loader  # its skips are known once a pass has read it
            return loader
        self._store[key] = list(loader)
        self._skipped[key] = [[str(k), str(r)] for k, r in loader.stats["skipped_keys"]]
        if not self._store[key]:
            raise ValueError(f"{shards}: the test set yielded no batch")
        warn_unread_texts([t for b in self._store[key] for t in b["text"]], self.tokenizer_path,
                          loader_cfg.max_len, f"{shards} ({text}s)")
        return self._store[key]

    def skipped(self, loader_cfg, shards: str, text: str) -> list[list[str]]:
        """[key, reason] of each test sample the loader skipped (after :meth:`get` was read)."""
        key = (repr(loader_cfg), shards, text)
        if key in self._loaders:
            return [[str(k), str(r)] for k, r in self._loaders[key].stats["skipped_keys"]]
        return self._skipped.get(key, [])


def record_skipped(metrics: dict, skipped: list[list[str]], shards: str) -> None:
    """Name in ``metrics`` the test samples that could not be read, so a table built from it can
    say its numbers cover fewer clips than the test set holds (nothing is added when none was)."""
    if not skipped:
        return
    metrics["skipped_samples"] = len(skipped)
    metrics["skipped_keys"] = skipped[:SKIPPED_KEYS_KEPT]
    log.warning("%s: %d test sample(s) could not be read and are left out of these numbers (first: %s)",
                shards, len(skipped), ", ".join(f"{k} ({r})" for k, r in skipped[:3]))


class ResultsWriteError(OSError):
    """A results file could not be written (a full or broken disk): exit 1, naming the file."""


_TEST_SET_WARNED: set = set()  # test sets whose missing videos this process has named already


def record_unseen(metrics: dict, batches, shards: str) -> None:
    """Name the test videos the shard folder's stats.parquet lists as written ('ok') that no batch
    held: a shard cut short loses every sample after the cut without a per-sample error, and the
    rows that failed preprocessing never reach a shard. Both shrink the test set; say so, in the
    log and in ``metrics["test_set"]`` (written only when something is missing, so a complete
    test set's results file is as before)."""
    import pandas as pd

    from preprocess.shard import WINDOW_KEY
    from train.data.shards import expand_shards

    try:
        folder = Path(expand_shards(shards)[0]).parent
        stats = pd.read_parquet(folder / "stats.parquet", columns=["key", "status", "error"])
    except Exception:  # remote shards, a glob over several folders, no stats: nothing to compare with
        return
    seen = {m.get("key") for b in batches for m in b["meta"]}
    # A long video is evaluated as its windows ("clip_w000"); stats.parquet names the video.
    seen |= {WINDOW_KEY.sub("", k) for k in seen if isinstance(k, str)}
    ok = list(dict.fromkeys(k for k in stats.loc[stats["status"] == "ok", "key"] if isinstance(k, str)))
    unseen = [k for k in ok if k not in seen]
    # stats.parquet has a row per annotation row: a video with one ok row and a failed one (a
    # duplicate row, a bad question) was written and evaluated; only videos with no ok row failed.
    failed = stats.loc[(stats["status"] != "ok") & ~stats["key"].isin(ok)].drop_duplicates("key")
    if not unseen and failed.empty:
        return
    test_set = {"annotated_videos": int(stats["key"].nunique()), "written_videos": len(ok),
                "evaluated_videos": len(ok) - len(unseen)}
    if unseen:
        test_set["unseen_keys"] = unseen[:SKIPPED_KEYS_KEPT]
    if not failed.empty:
        test_set["failed_preprocessing"] = len(failed)
        test_set["failed_keys"] = [str(k) for k in failed["key"].head(SKIPPED_KEYS_KEPT)]
    metrics["test_set"] = test_set
    if shards in _TEST_SET_WARNED:  # zero-shot and fine-tuned read the same test set: say it once
        return
    _TEST_SET_WARNED.add(shards)
    if unseen:
        log.warning("%s: %d of the %d test videos written by preprocessing were not evaluated: %s",
                    shards, len(unseen), len(ok), ", ".join(unseen[:10]))
    if not failed.empty:
        log.warning("%s: %d annotated test video(s) failed preprocessing and are not in these numbers "
                    "(stats.parquet: %s)", shards, len(failed),
                    ", ".join(f"{k} ({e})" for k, e in failed[["key", "error"]].head(3).itertuples(index=False)))


def with_shuffle(run, shuffle_test: bool, seed: int) -> dict:
    """``run(shuffle_seed)`` normally and, if asked, with shuffled frames; the drop between."""
    normal = run(None)
    if not shuffle_test:
        return {"normal": normal}
    shuffled = run(seed)
    return {"normal": normal, "shuffled": shuffled, "shuffle_drop": shuffle_drop(normal, shuffled)}


def frame_plan(cfg: EvalConfig, state: dict, params: dict, mode: str | None = None,
               frames: int | None = None) -> tuple[int | None, FrameEnsemble]:
    """(the loader's test frame count, null: the checkpoint's; the ensemble over them) for
    ``mode`` / ``frames`` (default: eval.frames_ensemble / eval.ensemble_frames)."""
    key = "eval.ensemble_study.frames" if frames else "eval.ensemble_frames"
    mode = mode or cfg.frames_ensemble
    frames = frames or cfg.ensemble_frames
    if mode == "none":
        return cfg.num_frames, FrameEnsemble()
    group = cfg.num_frames or loader_config_of(state, params, num_frames=None, batch_size=cfg.batch_size).frames_per_clip
    return frames, FrameEnsemble.plan(mode, frames, group, cfg.ensemble_temperature, key=key)


def evaluate_checkpoint(folder: Path, task: str, cfg: EvalConfig, params: dict, cache: BatchCache,
                        seed: int, *, ensemble_mode: str | None = None, ensemble_frames: int | None = None,
                        shuffle_test: bool | None = None, group_cache: dict | None = None,
                        video_memo=None) -> tuple[dict, dict, dict]:
    """(metrics, fingerprint, plot curves) of one checkpoint on one task; ``ensemble_mode`` /
    ``ensemble_frames`` / ``shuffle_test`` replace eval's settings (the ensemble study);
    ``video_memo`` (eval/video_memo.py): the checkpoint's encoded clips, shared by its zero-shot tests."""
    from train.data.text import load_tokenizer

    from eval.qa import evaluate_multiple_choice, evaluate_open_ended
    from train.tasks import MultipleChoice, OpenEndedQA
    from eval.retrieval import evaluate_retrieval

    module, state = load_task_model(folder, map_location=eval_device(cfg.device))
    test_frames, ensemble = frame_plan(cfg, state, params, ensemble_mode, ensemble_frames)
    loader_cfg = loader_config_of(state, params, num_frames=test_frames, batch_size=cfg.batch_size)
    max_len = cfg.max_len or loader_cfg.max_len
    model = module.model if isinstance(module, (OpenEndedQA, MultipleChoice)) else module
    task_eval = getattr(cfg, task)
    batches = cache.get(loader_cfg, task_eval.shards, LOADER_TEXT[task])
    curves: dict = {}
    if task == "retrieval":
        from eval.order_pairs import load_order_pairs

        tokenizer = load_tokenizer(model_config_of(state).text.path)
        pairs = load_order_pairs(task_eval.order_pairs) if task_eval.order_pairs else None
        texts: dict = {}

        def run(shuffle_seed):
            r = evaluate_retrieval(model, batches, tokenizer, max_len=max_len, rerank_k=task_eval.rerank_k,
                                   rerank_add_sim=task_eval.rerank_add_vtc,
                                   paragraph=task_eval.paragraph, shuffle_seed=shuffle_seed,
                                   reuse_texts=texts.get("emb"), order_pairs=pairs,
                                   # intervals of the normal pass only: the shuffled one is a contrast
                                   bootstrap=cfg.bootstrap if shuffle_seed is None else 0,
                                   bootstrap_seed=seed, sparsify=task_eval.sparsify, ensemble=ensemble,
                                   group_cache=group_cache, video_memo=video_memo)
            if shuffle_seed is not None:
                r.pop("per_query")
            texts["emb"] = r.pop("embeddings")  # the shuffled pass changes only the videos
            curves["shuffled" if shuffle_seed is not None else "normal"] = r.pop("curve")
            return r
    elif task == "mc_caption":
        from eval.caption_choice import evaluate_caption_choice

        tokenizer = load_tokenizer(model_config_of(state).text.path)

        def run(shuffle_seed):
            return evaluate_caption_choice(model, tokenizer, batches, max_len=max_len, shuffle_seed=shuffle_seed,
                                           ensemble=ensemble, video_memo=video_memo)
    elif task == "fib":
        from eval.mlm_qa import MLMAnswerScorer, evaluate_mlm_qa, test_answers

        scorer = MLMAnswerScorer(model, load_tokenizer(model_config_of(state).text.path), test_answers(batches),
                                 max_len=max_len, template=cfg.qa.mlm_template)

        def run(shuffle_seed):
            return evaluate_mlm_qa(scorer, batches, shuffle_seed=shuffle_seed, ensemble=ensemble,
                                   video_memo=video_memo)
    elif task == "qa" and not isinstance(module, OpenEndedQA):
        from eval.mlm_qa import MLMAnswerScorer, evaluate_mlm_qa

        scorer = MLMAnswerScorer(model, load_tokenizer(model_config_of(state).text.path), qa_training(params, run_name_of(folder))[0],
                                 max_len=max_len, template=task_eval.mlm_template)

        def run(shuffle_seed):
            return evaluate_mlm_qa(scorer, batches, shuffle_seed=shuffle_seed, ensemble=ensemble,
                                   video_memo=video_memo)
    elif task == "qa":

        text_cache: dict = {}  # questions are encoded once for the normal and the shuffled pass

        def run(shuffle_seed):
            return evaluate_open_ended(module, batches, shuffle_seed=shuffle_seed, text_cache=text_cache,
                                       ensemble=ensemble, group_cache=group_cache)
    else:
        mc = module if isinstance(module, MultipleChoice) else MultipleChoice(
            model, load_tokenizer(model_config_of(state).text.path), max_len)

        text_cache = {}

        def run(shuffle_seed):
            return evaluate_multiple_choice(mc, batches, shuffle_seed=shuffle_seed, text_cache=text_cache,
                                            ensemble=ensemble, group_cache=group_cache)

    metrics = with_shuffle(run, cfg.shuffle_test if shuffle_test is None else shuffle_test, seed)
    record_skipped(metrics, cache.skipped(loader_cfg, task_eval.shards, LOADER_TEXT[task]), task_eval.shards)
    record_unseen(metrics, batches, task_eval.shards)
    metrics["frames"] = loader_cfg.frames_per_clip
    if ensemble.mode != "none":
        metrics["frames_ensemble"] = {"mode": ensemble.mode, "groups": ensemble.groups, "label": ensemble.label,
                                      "frames_per_group": loader_cfg.frames_per_clip // ensemble.groups}
        if ensemble.mode == "lse":
            metrics["frames_ensemble"]["temperature"] = ensemble.temperature
    metrics["dataset"] = task_eval.dataset
    return metrics, fingerprint(folder), curves


def eval_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("eval.device: 'cuda' requested but no GPU is visible")
    use_cuda = torch.cuda.is_available() if name == "auto" else name == "cuda"
    return torch.device("cuda" if use_cuda else "cpu")


def run_name_of(pretrained: Path) -> str:
    """The run (eval's "recipe") a pre-trained checkpoint folder belongs to: its folder name
    under eval.pretrain_dir, above a ``final`` / ``last`` sub-folder."""
    pretrained = Path(pretrained)
    return pretrained.parent.name if pretrained.name in ("final", "last") else pretrained.name


def qa_training_shards(params: dict, recipe: str) -> tuple[str, str]:
    """(shards, where they came from) of the QA training answers: the ones the fine-tuned QA
    checkpoint of ``recipe`` recorded, else finetune.qa.shards."""
    from train.checkpoint import CheckpointError, read_state

    cfg = section(params, EvalConfig, "eval")
    try:
        folder = resolve_checkpoint(Path(cfg.finetune_dir) / recipe / "qa")
        shards = (read_state(folder).get("finetune") or {}).get("shards")
        if shards:
            return shards, f"{folder}/state.json (finetune.shards)"
    except CheckpointError:
        pass
    return section(params, FinetuneConfig, "finetune").qa.shards, "finetune.qa.shards"


def qa_training(params: dict, recipe: str) -> tuple[list[str], list[str]]:
    """(the answers the fine-tuned classifier chooses from, the training answers). The vocabulary
    is the fine-tuned checkpoint's own (state.json ``answers``) when there is one, else the
    finetune.qa.vocab_size most frequent training answers (train.finetune builds it the same way);
    the training answers are read from the shards that checkpoint was trained on."""
    from train.checkpoint import CheckpointError, read_state
    from train.finetune import training_answers
    from train.tasks import AnswerVocab

    ft = section(params, FinetuneConfig, "finetune")
    answers = training_answers(qa_training_shards(params, recipe)[0])
    try:
        state = read_state(resolve_checkpoint(Path(section(params, EvalConfig, "eval").finetune_dir) / recipe / "qa"))
        if state.get("answers"):
            return list(state["answers"]), answers
    except CheckpointError:
        pass
    return list(AnswerVocab.from_training_answers(answers, ft.qa.vocab_size).answers), answers


def has_mlm_head(folder: Path) -> bool:
    from train.checkpoint import read_state

    return model_config_of(read_state(folder)).objectives.mlm > 0


def qa_chance(params: dict, cfg: EvalConfig, cache: BatchCache, loader_cfg, recipe: str) -> dict:
    """Majority-answer baseline: always answer the most frequent training answer."""
    from eval.metrics import majority_baseline
    from train.tasks import normalize_answer, open_ended_questions

    train = [normalize_answer(a) for a in qa_training(params, recipe)[1]]
    test = [normalize_answer(q["answer"]) for b in cache.get(loader_cfg, cfg.qa.shards, "question")
            for m in b["meta"] for q in open_ended_questions(m)]
    return majority_baseline(train, test)


def write_curves(curves: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    normal = curves["normal"]
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        cols = ["k", "t2v", "v2t"] + (["t2v_shuffled", "v2t_shuffled"] if "shuffled" in curves else [])
        w.writerow(cols)
        for i, k in enumerate(normal["k"]):
            row = [k, f"{normal['t2v'][i]:.2f}", f"{normal['v2t'][i]:.2f}"]
            if "shuffled" in curves:
                row += [f"{curves['shuffled']['t2v'][i]:.2f}", f"{curves['shuffled']['v2t'][i]:.2f}"]
            w.writerow(row)


def evaluate_recipe(params: dict, recipe: str, overrides: list[str] | tuple[str, ...] = (),
                    protocol: dict | None = None) -> dict:
    """Evaluate one recipe's checkpoints; writes its details and headline files, returns the details.

    ``overrides``: the ``key=value`` overrides already in ``params`` (recorded with the params
    hash, so the tables can check the file against the params file they are given); ``protocol``:
    a preset's card check (eval.benchmarks.protocol_record), recorded for the tables.
    Both files are rewritten after each task, with the tasks still to come under ``pending``,
    so a failure later in the run loses none of the numbers already measured."""
    from train.checkpoint import CheckpointError, read_state

    cfg = section(params, EvalConfig, "eval")
    seed = cfg.seed if cfg.seed is not None else top_level_seed(params)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pre = resolve_checkpoint(Path(cfg.pretrain_dir) / recipe)
    cache = BatchCache(seed, tokenizer_path=model_config_of(read_state(pre)).text.path, view=cfg.view)
    finetune = to_dict(section(params, FinetuneConfig, "finetune"))
    out: dict[str, Any] = {"recipe": recipe, "params": {"eval": to_dict(cfg), "finetune": finetune, "seed": seed},
                           "checkpoints": {}, "zero_shot": {}, "finetuned": {}, "not_finetuned": [],
                           "chance": {}}
    if protocol is not None:
        out["protocol"] = protocol
    plots = Path(cfg.plots_dir) / "recall"
    finetuned: dict[str, Path] = {}
    for task in (t for t in cfg.tasks if t not in ZERO_SHOT_TASKS):
        try:
            finetuned[task] = resolve_checkpoint(Path(cfg.finetune_dir) / recipe / task)
        except CheckpointError:
            out["not_finetuned"].append(task)
    # zero-shot open-ended QA reads the MLM head (eval/mlm_qa.py), for the recipes asked
    mlm_qa = recipe in cfg.qa.zero_shot_mlm and has_mlm_head(pre)
    # fill-in-the-blank reads the MLM head too: the same recipes (and the same skip without a head)
    pending = ([("zero_shot", t) for t in cfg.tasks if t not in ("qa", "fib") or mlm_qa]
               + [("finetuned", t) for t in finetuned])
    from eval.video_memo import VideoMemo

    # the pre-trained model's encoded clips: zero-shot retrieval, MLM QA and the caption tests read
    # the same test clips (from different shard sets), so each is encoded once (never shared with
    # a fine-tuned model: the memo belongs to one set of weights)
    memo = VideoMemo()
    while pending:
        setting, task = pending.pop(0)
        folder = pre if setting == "zero_shot" else finetuned[task]
        # zero-shot MLM QA and the zero-shot-only caption tests skip the shuffle pass: cheap rows
        quick = (setting, task) == ("zero_shot", "qa") or task in ZERO_SHOT_TASKS
        metrics, fp, curves = evaluate_checkpoint(folder, task, cfg, params, cache, seed,
                                                  shuffle_test=False if quick else None,
                                                  video_memo=memo if setting == "zero_shot" else None)
        out[setting][task] = metrics
        out["checkpoints"]["pretrain" if setting == "zero_shot" else f"finetune_{task}"] = fp
        if curves:
            write_curves(curves, plots / f"{recipe}-{setting}.csv")
        if pending or "qa" in cfg.tasks or recipe in cfg.ensemble_study.recipes:
            later = (["frame_ensembles"] if recipe in cfg.ensemble_study.recipes else []) + ["chance"]
            write_results(cfg, recipe, out, params, overrides, pending=[f"{s}/{t}" for s, t in pending] or later)
    if recipe in cfg.ensemble_study.recipes:
        out["frame_ensembles"] = ensemble_study(cfg, params, recipe, pre, cache, seed)
    if "qa" in cfg.tasks:
        loader_cfg = loader_config_of(read_state(pre), params, num_frames=cfg.num_frames, batch_size=cfg.batch_size)
        out["chance"]["qa_majority"] = qa_chance(params, cfg, cache, loader_cfg, recipe)
    return write_results(cfg, recipe, out, params, overrides)


def chance_levels(out: dict) -> dict:
    """Chance levels, from the test sets evaluated so far (and the QA majority answer, if known)."""
    chance = {k: v for k, v in out["chance"].items() if k == "qa_majority"}
    for setting in ("zero_shot", "finetuned"):
        r = out[setting].get("retrieval")
        if r:
            chance["retrieval_R@1"] = r["normal"]["chance_R@1"]
            if "order_pairs" in r["normal"]:
                chance["order_pairs"] = r["normal"]["order_pairs"]["chance"]
        m = out[setting].get("mc")
        if m:
            chance["mc"] = m["normal"]["chance"]
    if "mc_caption" in out["zero_shot"]:
        chance["mc_caption"] = out["zero_shot"]["mc_caption"]["normal"]["chance"]
    if "fib" in out["zero_shot"]:
        chance["fib_majority"] = out["zero_shot"]["fib"]["normal"]["majority"]
    return chance


def write_results(cfg: EvalConfig, recipe: str, out: dict, params: dict, overrides, *,
                  pending: list[str] | None = None) -> dict:
    """Write ``<details_dir>/<recipe>.json`` and ``<metrics_dir>/eval-<recipe>.json``; return the
    details. ``pending``: what is still to be evaluated (the files then say so); the final write
    has none and no ``pending`` key."""
    out = {**out, "chance": chance_levels(out)}
    # Measured numbers are rounded for stable files; the settings are written as they are
    # (rounding turned a learning rate of 5e-5 into 1e-4 in the provenance).
    out = {**rounded({k: v for k, v in out.items() if k != "params"}), "params": out["params"],
           FIELD: stamp(params, EVAL_KEYS, overrides=overrides)}
    extra = {"pending": pending} if pending else {}
    for path, payload in ((details_path(cfg, recipe), {**out, **extra}),
                          (metrics_path(cfg, recipe), {**headline(out), FIELD: out[FIELD], **extra})):
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)  # a kill mid-write leaves the previous file whole
        except OSError as err:  # a full or read-only results disk: say which file, leave no temp
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise ResultsWriteError(f"{path}: not written ({err.strerror or err}); free space or "
                                    "point eval.details_dir / eval.metrics_dir elsewhere and rerun") from err
    return out


def details_path(cfg: EvalConfig, recipe: str) -> Path:
    return Path(cfg.details_dir) / f"{recipe}.json"


def metrics_path(cfg: EvalConfig, recipe: str) -> Path:
    return Path(cfg.metrics_dir) / f"eval-{recipe}.json"


STUDY_SETTING = {"retrieval": "zero_shot", "qa": "finetuned", "mc": "zero_shot"}


def ensemble_study(cfg: EvalConfig, params: dict, recipe: str, pre: Path, cache: BatchCache, seed: int) -> dict:
    """Each mode of ``eval.ensemble_study`` on ``ensemble_study.frames`` test frames, per task in
    its study setting (zero-shot retrieval and MC, fine-tuned QA), without the shuffle test,
    intervals or VTM re-ranking; mean / max / lse use groups of the training frame count. The baseline row is the main
    evaluation's result (the training count unless eval.num_frames says otherwise)."""
    from train.checkpoint import CheckpointError

    study = cfg.ensemble_study
    # the study's numbers are a contrast between modes: no bootstrap, no shuffle pass
    # groups of the training frame count, whatever eval.num_frames says
    # retrieval ranks by VTC alone: the table compares VTC R@1, and VTM re-ranking of every mode would
    # cost more than the rest of the study together
    quiet = dataclasses.replace(cfg, bootstrap=0, frames_ensemble="none", ensemble_frames=None, num_frames=None,
                                retrieval=dataclasses.replace(cfg.retrieval, rerank_k=0))
    out: dict = {"frames": study.frames, "modes": {}}
    for task in study.tasks:
        if task not in cfg.tasks:
            continue
        setting = STUDY_SETTING[task]
        try:
            folder = pre if setting == "zero_shot" else resolve_checkpoint(Path(cfg.finetune_dir) / recipe / task)
        except CheckpointError:
            continue
        groups: dict = {}  # mean / max / lse encode each frame group once and combine it three ways
        for mode in study.modes:
            metrics, _, _ = evaluate_checkpoint(folder, task, quiet, params, cache, seed, ensemble_mode=mode,
                                                ensemble_frames=study.frames, shuffle_test=False,
                                                group_cache=groups)
            metrics["normal"].pop("per_query", None)
            out["modes"].setdefault(mode, {}).setdefault(setting, {})[task] = metrics
    return out


def headline(out: dict) -> dict:
    """The few numbers ``dvc metrics show`` lists: R@1/5/10 and MdR of VTC ranking (the headline),
    VTM re-ranking's beside it (``vtm_*``), order-pair accuracy, accuracies, the shuffle-test
    drops and the chance levels (details stay in details_dir)."""
    lean: dict[str, Any] = {}
    for setting in ("zero_shot", "finetuned"):
        for task, m in sorted(out[setting].items()):
            if task == "retrieval":
                row = {}
                for name, prefix in (("vtc", ""), ("vtm", "vtm_")):
                    if name in m["normal"]:
                        row.update({f"{prefix}{d}_{k}": m["normal"][name][d][k] for d in ("t2v", "v2t")
                                    for k in ("R@1", "R@5", "R@10", "MdR")})
                for name, value in m["normal"].get("order_pairs", {}).items():
                    if name in ("vtc", "vtm"):
                        row[f"order_pair_acc_{name}"] = value
                if "shuffle_drop" in m:
                    row["shuffle_drop_t2v_R@1"] = m["shuffle_drop"]["vtc"]["t2v"]["R@1"]
            else:
                row = {"accuracy": m["normal"]["accuracy"]}
                if "shuffle_drop" in m:
                    row["shuffle_drop_accuracy"] = m["shuffle_drop"]["accuracy"]
            lean.setdefault(setting, {})[task] = row
    chance = dict(out["chance"])
    if "qa_majority" in chance:
        chance["qa_majority"] = chance["qa_majority"]["accuracy"]
    lean["chance"] = chance
    return lean


def check_inputs(params: dict, cfg: EvalConfig, recipes: list[str], *, recipes_from: str) -> None:
    """What the evaluation will read, checked before any work: a checkpoint for every recipe,
    shards for every task, order pairs that belong to the retrieval test set. A gap stops it
    at once, naming the setting to change (``recipes_from``: ``--recipe`` or ``eval.recipes``)."""
    from train.checkpoint import CheckpointError
    from train.data.shards import expand_shards

    missing, present = [], []
    for recipe in recipes:
        try:
            resolve_checkpoint(Path(cfg.pretrain_dir) / recipe)
            present.append(recipe)
        except CheckpointError:
            missing.append(f"{recipe} ({Path(cfg.pretrain_dir) / recipe})")
    if missing:
        hint = (f"; evaluate those that exist: eval.recipes=[{','.join(present)}]" if present
                else "; train one with python -m train.pretrain (or point eval.pretrain_dir / --run-dir at it)")
        raise ConfigError(f"{recipes_from}: no pre-trained checkpoint for {', '.join(missing)}{hint}")
    inputs = {task: (f"eval.{task}.shards", getattr(cfg, task).shards) for task in cfg.tasks}
    if "qa" in cfg.tasks:  # the majority-answer baseline reads the training answers
        for recipe in recipes:  # those the fine-tuned checkpoint trained on, else finetune.qa.shards
            shards, where = qa_training_shards(params, recipe)
            inputs[f"qa (training answers of {recipe})"] = (where, shards)
    for task, (key, shards) in inputs.items():
        try:
            expand_shards(shards)
        except FileNotFoundError as err:
            ready = [t for t in cfg.tasks if _has_shards(getattr(cfg, t).shards)
                     and not (t == "qa" and task.startswith("qa"))]
            hint = (f"evaluate only the tasks that have data, e.g. eval.tasks=[{','.join(ready)}]" if ready else
                    "no task in eval.tasks has data: make its shards (python -m preprocess) or point "
                    f"{key} at them")
            raise ConfigError(f"{key}: {err} (eval.tasks lists {task.split()[0]}); {hint}") from None
    if "retrieval" in cfg.tasks and cfg.retrieval.order_pairs:
        from eval.order_pairs import KEY, load_order_pairs

        pairs = load_order_pairs(cfg.retrieval.order_pairs)
        keys = shard_keys(expand_shards(cfg.retrieval.shards))
        if keys is not None and not any(e["key"] in keys for e in pairs):
            raise ConfigError(f"{KEY}: none of the {len(pairs)} clips of {cfg.retrieval.order_pairs} is in "
                              f"eval.retrieval.shards ({cfg.retrieval.shards}); a test set without temporal-order "
                              f"pairs needs {KEY}=null")


def _has_shards(shards: str) -> bool:
    from train.data.shards import expand_shards

    try:
        expand_shards(shards)
        return True
    except FileNotFoundError:
        return False


def shard_keys(urls: list[str]) -> set[str] | None:
    """The sample keys of local tar shards (member names up to the first dot, as WebDataset
    groups them), from the tar headers alone; None if a shard is remote."""
    import tarfile

    keys: set[str] = set()
    for url in urls:
        if "://" in url or url.startswith("pipe:"):
            return None
        with tarfile.open(url) as tar:
            keys.update(Path(m.name).name.split(".", 1)[0] for m in tar if m.isfile())
    return keys


def summary_lines(cfg: EvalConfig, recipe: str, out: dict) -> list[str]:
    """The headline numbers of one recipe and where its files went, for the end of the run."""
    lines = []
    for setting in ("zero_shot", "finetuned"):
        for task, m in sorted(out[setting].items()):
            n = m["normal"]
            what = f"{recipe} {setting.replace('_', '-')} {task} ({m.get('dataset')}):"
            if task == "retrieval":
                t2v = n["vtc"]["t2v"]
                ci = t2v.get("R@1_ci95")
                lines.append(f"{what} t2v R@1 {t2v['R@1']:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")
                             + f", R@5 {t2v['R@5']:.1f}, R@10 {t2v['R@10']:.1f}, MdR {t2v['MdR']:g}"
                             + f" over {n['num_videos']} videos (chance R@1 {n['chance_R@1']:.1f})")
                if "order_pairs" in n:
                    lines[-1] += f"; order pairs {n['order_pairs']['vtc']:.1f}% (chance 50)"
            else:
                lines.append(f"{what} accuracy {n['accuracy']:.1f}%")
    lines.append(f"  metrics: {metrics_path(cfg, recipe)}\n  details: {details_path(cfg, recipe)}")
    return lines


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append", default=None,
                   help="pre-training run(s) to evaluate (default: eval.recipes)")
    p.add_argument("--preset", default=None, metavar="NAME|FILE",
                   help="a benchmark preset: a name from eval/presets/ (see `python -m eval.benchmarks list`) "
                        "or the path of a preset YAML file anywhere")
    cli.add_config_arguments(p, run_dir=True)
    args = cli.parse(p, argv)
    from eval.benchmarks import preset_overrides, protocol_record

    overrides = preset_overrides(args.preset, need_shards=not args.print_config) + args.overrides
    params = load_params(args.params, overrides=overrides)
    cfg = section(params, EvalConfig, "eval")
    from train.checkpoint import MACHINE_LOADER_FIELDS

    cli.warn_unread(args.overrides, "eval.evaluate", machine_loader=MACHINE_LOADER_FIELDS)
    top_level_seed(params)
    if args.print_config:
        return cli.print_config(params)
    protocol = protocol_record(args.preset)
    recipes = args.recipe or cfg.recipes
    check_inputs(params, cfg, recipes, recipes_from="--recipe" if args.recipe else "eval.recipes")
    from train.signals import kill_workers_at_exit

    kill_workers_at_exit()  # the loader workers ignore Ctrl-C: they must not keep the exit waiting
    try:
        for recipe in recipes:
            out = evaluate_recipe(params, recipe, overrides, protocol)
            print("\n".join(summary_lines(cfg, recipe, out)), flush=True)
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        return cli.fail(err)
    except OSError as err:  # a test shard gone or unreadable mid-run, a full results disk
        return cli.fail(err, 1)
    except KeyboardInterrupt:  # a person's stop, not a fault: one line, the shell's status for Ctrl-C
        print("interrupted: the results files hold the tasks finished before it; rerun the same command "
              "to evaluate again", file=sys.stderr)
        return EXIT_CTRL_C
    return 0


EXIT_CTRL_C = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
