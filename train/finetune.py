"""Fine-tune a pre-trained checkpoint on a downstream task, with the trainer's own loop.

    python -m train.finetune --task retrieval|qa|mc [--recipe smaug] [--params params.yaml]
                            [--init models/pretrain/smaug] [--out models/finetune/smaug/qa]
                            [--fresh] [key.path=value ...]

* ``retrieval``: the model's own VTC + VTM objectives (its forward), with MLM/MVM switched off
  and no video masking; one caption per video per step, drawn anew each epoch.
* ``qa``: open-ended QA as classification over the ``finetune.qa.vocab_size`` most frequent
  training answers (:class:`train.tasks.OpenEndedQA`); the answer list is stored in state.json.
* ``mc``: multiple choice by VTM over question+option, cross-entropy over the options
  (:class:`train.tasks.MultipleChoice`).

Safety and resume come from :class:`train.trainer.Trainer` and :mod:`train.run`, as in
pre-training: atomic checkpoints every ``ckpt_every`` steps, a stop signal (SIGTERM, SIGUSR1,
SIGUSR2, SIGINT, SIGHUP: :mod:`train.signals`) writes one and exits 75, a non-finite loss stops
the run naming the batch. Rerunning the same command continues an unfinished run and leaves a
finished one alone, but only when the folder was made from the same pre-trained checkpoint,
settings and shards; otherwise it stops and says what differs (``--fresh`` starts over). The
weights are read from safetensors only.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line: own the stop signals before the slow imports
    from train.signals import STOP

    STOP.install()

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path
import torch

from train.config import TASKS, FinetuneConfig, LogConfig
from train.loggers import check_available, open_loggers
from train.repeatable import make_repeatable
from pipeline import cli
from pipeline.config import ConfigError, load_params, section, to_dict, top_level_deterministic, top_level_seed
from train.checkpoint import fingerprint, load_weights, loader_config_of, model_config_of, resolve_checkpoint

LOADER_TEXT = {"retrieval": "caption", "qa": "question", "mc": "question"}


# Task keys that change how a run goes, not what it learns (gradient checkpointing replays the
# same RNG state), left out of the run identity so a resume may change them.
RUN_INDEPENDENT = ("ckpt_every", "log_every", "shards", "grad_checkpointing")


def training_answers(shards) -> list[str]:
    """Every open-ended answer in the training shards (JSON members only; no decoding)."""
    from train.data.shards import RawSample, expand_shards, iter_samples

    from train.tasks import open_ended_questions

    answers = []
    for s in iter_samples(expand_shards(shards), rank=0, world_size=1, worker=0, num_workers=1, seed=0,
                          epoch=0, train=False, resampled=False, shuffle_buffer=0):
        if isinstance(s, RawSample):
            answers += [q["answer"] for q in open_ended_questions(s.meta) if q.get("answer") is not None]
    if not answers:
        raise ValueError(f"{shards}: no open-ended question with an answer; cannot build the answer vocabulary")
    return answers


def finetune_model_config(cfg, task: str, task_cfg):
    """Retrieval trains only VTC/VTM on whole (unmasked) clips; QA/MC use the model as is."""
    if task != "retrieval":
        return cfg
    objectives = dataclasses.replace(cfg.objectives, vtc=task_cfg.vtc, vtm=task_cfg.vtm, mlm=0.0, mvm=0.0)
    masking = dataclasses.replace(cfg.masking, video_ratio=0.0)
    return dataclasses.replace(cfg, objectives=objectives, masking=masking)


def write_loss_curve(history: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["step", "loss"] + sorted({k for row in history for k in row if k.startswith("loss_")})
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for row in history:
            w.writerow([int(row["step"])] + [f"{float(row.get(c, float('nan'))):.6f}" for c in cols[1:]])


def run_finetune(params: dict, task: str, recipe: str, *, init: str | Path | None = None,
                 out: str | Path | None = None, fresh: bool = False, progress: bool = True,
                 as_stage: bool = False) -> dict:
    """Fine-tune ``recipe``'s checkpoint on ``task``; returns a summary (also in state.json)."""
    from train import checkpoint as ckpt
    from train.data import build_loader
    from train.data.text import load_tokenizer
    from train.model import SMAUG
    from train.distributed import barrier, init_distributed, shutdown
    from train.run import code_of_run, data_identity, one_training_per_folder, open_stage_run, stream_from
    from train.trainer import Trainer, scale_lr_of

    from train.tasks import AnswerVocab, MultipleChoice, OpenEndedQA, warn_similar_answers

    if task not in TASKS:
        raise ConfigError(f"task: must be one of {', '.join(TASKS)}, got {task!r}")
    cfg = section(params, FinetuneConfig, "finetune")
    task_cfg = cfg.task(task)
    log_cfg = section(params, LogConfig, "log")
    check_available(log_cfg)  # a missing logger package: before any work
    seed = cfg.seed if cfg.seed is not None else top_level_seed(params)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    make_repeatable(top_level_deterministic(params))
    init = resolve_checkpoint(init or Path(cfg.init_dir) / recipe)
    # the loss curve: under the results folder for the pipeline's runs (dvc plots, the tables' VTM
    # status read it there); next to the checkpoint folder (<out>-loss.csv, not inside it: a
    # checkpoint folder holds only what a save swaps in) for a run put elsewhere with --out, which
    # must not overwrite the pipeline's curve of the same recipe and task
    curve_file = Path(out).with_name(Path(out).name + "-loss.csv") if out else None
    out = Path(out or Path(cfg.out_dir) / recipe / task)

    init_state = ckpt.read_state(init)
    model_cfg = finetune_model_config(model_config_of(init_state), task, task_cfg)
    model = SMAUG(model_cfg, video_init=False, text_weights=False)
    # heads of objectives switched off for fine-tuning may be in the file: ignore them
    load_weights(model, init, allow_unexpected=True)
    loader_cfg = loader_config_of(init_state, params, num_frames=cfg.num_frames, batch_size=task_cfg.batch_size)
    tokenizer = load_tokenizer(model_cfg.text.path)

    identity = {"config": {"seed": seed, "recipe": recipe, "task": task, "init_model_sha256":
                           fingerprint(init)["sha256"], "num_frames": cfg.num_frames,
                           **{k: v for k, v in to_dict(task_cfg).items() if k not in RUN_INDEPENDENT}},
                "data": data_identity(task_cfg.shards, f"finetune.{task}.shards")}
    dist = init_distributed(cfg.device)
    with one_training_per_folder(out, dist):  # a second job on this run is refused, naming the first
        if dist.is_main:  # what an interrupted checkpoint write left: restored or removed
            for what in ckpt.repair(out):
                print(what, file=sys.stderr)
        barrier(dist)
        status, state, code = open_stage_run(out, identity, fresh=fresh, as_stage=as_stage, dist=dist)
        results_dir = Path(params.get("pretrain", {}).get("results_dir", "results"))
        curve_file = curve_file or results_dir / "plots" / "finetune" / f"{recipe}-{task}.csv"
        if status == "finished":
            print(f"{out}: fine-tuning already finished at step {state.get('step')} with these settings; "
                  "pass --fresh to redo it")
            if dist.is_main and not curve_file.is_file() and state.get("curve"):  # DVC deleted it before the rerun
                write_loss_curve(state["curve"], curve_file)
            shutdown(dist)
            return state.get("summary", {})
        resume_from = out if status == "resume" else None

        extra_state: dict = {}
        if task == "qa":
            if resume_from is not None:  # the label ids the earlier run trained with
                vocab = AnswerVocab(ckpt.read_state(resume_from)["answers"])
            else:
                vocab = AnswerVocab.from_training_answers(training_answers(task_cfg.shards), task_cfg.vocab_size)
                if dist.is_main:  # normalize_answer stays ClipBERT's: name the answers it may split
                    warn_similar_answers(vocab.answers)
            module: torch.nn.Module = OpenEndedQA(model, vocab, tokenizer, loader_cfg.max_len)
            extra_state["answers"] = vocab.answers
        elif task == "mc":
            module = MultipleChoice(model, tokenizer, loader_cfg.max_len)
        else:
            module = model

        ckpt_state = {
            "recipe": recipe, "task": task, "init": fingerprint(init), "max_len": loader_cfg.max_len,
            "model_config": to_dict(model_cfg), "loader_config": to_dict(loader_cfg),
            "params": params, "finetune": to_dict(task_cfg),
            "identity": identity, "code": code_of_run(state, code), **extra_state,
        }
        torch.manual_seed(seed)  # the new QA head's initial weights
        if task == "qa":
            module.head.reset_parameters()
        loggers = None
        if dist.is_main and (log_cfg.tensorboard or log_cfg.wandb):  # dvc plots reads the loss CSV below
            loggers = open_loggers(log_cfg, results_dir, f"finetune-{recipe}-{task}", dvclive=False,
                                   resume=status == "resume")
        trainer = Trainer(module, task_cfg, dist=dist, ckpt_dir=out, ckpt_state=ckpt_state, live=loggers,
                          progress=progress, desc=f"finetune {recipe}/{task}", seed=seed)
        if task == "qa":
            scale_lr_of(trainer.optimizer, module.head, task_cfg.head_lr_scale)
        loader = build_loader(loader_cfg, task_cfg.shards, train=True, text=LOADER_TEXT[task], seed=seed,
                              rank=dist.rank, world_size=dist.world_size, tokenizer_path=model_cfg.text.path)
        batches = stream_from(trainer, loader, state)
        # the loss curve of earlier sessions rides in each checkpoint beside the data position, so a
        # resumed run writes the whole curve (the trainer's history holds this session's steps only)
        earlier = list(trainer.resumed_extra.get("curve", [])) if state is not None else []
        position = trainer.extra_state
        trainer.extra_state = lambda: {**position(), "curve": earlier + [dict(r) for r in trainer.history]}
        if state is not None:
            print(f"resuming {out} at step {trainer.step}")
        try:
            result = trainer.fit(batches)
        finally:
            if loggers is not None:
                loggers.end()
        summary = {"steps": trainer.step, "final_loss": result.final_loss, "clips_per_s": result.clips_per_s,
                   "wall_s": result.total_wall_s or result.wall_s}  # the whole run, resumed sessions included
        if result.steps != trainer.step:
            summary["wall_s_this_session"] = result.wall_s
        curve = earlier + trainer.history
        trainer.save(finished=True, summary=summary, curve=curve)
        if dist.is_main:
            write_loss_curve(curve, curve_file)
        shutdown(dist)
        return summary


@cli.config_errors_exit
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--recipe", default=None, help="pre-trained run (default: first of finetune.recipes)")
    p.add_argument("--init", default=None, help="checkpoint folder to start from")
    p.add_argument("--out", default=None,
                   help="output checkpoint folder (its loss curve then goes to <out>-loss.csv, not under results/)")
    p.add_argument("--preset", default=None, metavar="NAME|FILE",
                   help="a benchmark preset: a name from eval/presets/ (see `python -m eval.benchmarks list`) "
                        "or the path of a preset YAML file anywhere")
    p.add_argument("--fresh", action="store_true", help="start over even if a run is there")
    p.add_argument("--as-stage", action="store_true",
                   help="run as a DVC stage that keeps its checkpoint folder (persist): resume an interrupted "
                        "run only if its settings, data and code are unchanged, else start over (train/run.py)")
    p.add_argument("--no-progress", action="store_true")
    cli.add_config_arguments(p, run_dir=True)
    args = cli.parse(p, argv)
    from eval.benchmarks import preset_overrides

    params = load_params(args.params, overrides=preset_overrides(args.preset, need_shards=not args.print_config)
                         + args.overrides)
    from train.checkpoint import MACHINE_LOADER_FIELDS

    cli.warn_unread(args.overrides, "train.finetune", machine_loader=MACHINE_LOADER_FIELDS)
    recipe = args.recipe or section(params, FinetuneConfig, "finetune").recipes[0]
    if args.print_config:
        section(params, FinetuneConfig, "finetune")
        section(params, LogConfig, "log")
        top_level_seed(params)
        top_level_deterministic(params)
        return cli.print_config(params)
    from train.checkpoint import CheckpointWriteError
    from train.run import fail_on_fault
    from train.signals import STOP, tell
    from train.trainer import EXIT_INTERRUPTED, TrainingInterrupted

    try:
        with STOP:  # before any loader worker exists: see train.signals
            summary = run_finetune(params, args.task, recipe, init=args.init, out=args.out, fresh=args.fresh,
                                   progress=not args.no_progress, as_stage=args.as_stage)
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        return cli.fail(err, 1 if isinstance(err, CheckpointWriteError) else cli.EXIT_CONFIG)
    except TrainingInterrupted as err:  # carries its own exit meaning
        tell(f"interrupted: {err}")  # stderr may be a terminal gone with a SIGHUP
        return EXIT_INTERRUPTED
    except (RuntimeError, OSError) as err:
        return fail_on_fault(err, f"finetune.{args.task}.lr")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
