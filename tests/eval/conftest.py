"""Fixtures for the evaluation tests: real tiny shards, tiny checkpoints, a params file.

The shards are real: ffmpeg-encoded H.264 clips (closed GOP, no B-frames, yuv420p) written
with webdataset's TarWriter in the layout of design.md, read by the real loader. The
checkpoints are real SMAUG models of a tiny configuration, written by train.checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import webdataset as wds
import yaml

from pipeline.config import load_params, section, to_dict
from tests.support import make_h264_clip, params_dict

FPS, WIDTH, HEIGHT = 12, 64, 48
PATTERNS = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "yuvtestsrc"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black"]
MOTIONS = ["moves left", "moves right", "spins", "stays still", "grows", "shrinks"]

TINY = [
    "loader.image_size=32", "loader.num_frames=2", "loader.batch_size=4", "loader.num_workers=0",
    "loader.shuffle_buffer=8", "loader.max_len=16", "loader.backend=cpu",
    "model.video.image_size=32", "model.video.patch_size=8", "model.video.num_frames=2",
    "model.video.width=32", "model.video.depth=2", "model.video.heads=2",
    "model.text.num_layers=1", "model.text.freeze_layers=0", "model.text.max_len=16",
    "model.fusion.layers=1", "model.embed_dim=16",
    "model.mvm.decoder_width=16", "model.mvm.decoder_heads=2", "model.sparsify.layers=[0]",
]


def sample_meta(key: str, n: int, split: str) -> dict:
    caption = f"a {COLOURS[n % 6]} circle {MOTIONS[n % 6]}"
    return {
        "key": key, "source": f"videos/{key}.webm", "format": "msrvtt",
        "captions": [caption, f"the {COLOURS[n % 6]} shape {MOTIONS[n % 6]} slowly"],
        "qa": [], "split": split,
        "video": {"fps": float(FPS), "num_frames": 2 * FPS, "width": WIDTH, "height": HEIGHT,
                  "duration": 2.0, "codec": "h264", "pix_fmt": "yuv420p", "keyint": FPS},
        "source_probe": {}, "normalize": {"target_fps": FPS, "short_side": HEIGHT}, "extra": {},
    }


def qa_open(n: int) -> list[dict]:
    return [{"question": "what colour is the circle?", "answer": COLOURS[n % 6], "answer_type": "color",
             "options": None, "answer_idx": None},
            {"question": "how does the circle move?", "answer": MOTIONS[n % 6].split()[-1],
             "answer_type": "motion", "options": None, "answer_idx": None}]


def qa_choice(n: int) -> list[dict]:
    options = [MOTIONS[(n + k) % 6] for k in range(5)]
    right = n % 5
    options[0], options[right] = options[right], options[0]
    return [{"question": "what does the circle do?", "answer": options[right], "answer_type": "multiple_choice",
             "options": options, "answer_idx": right}]


def caption_choice(n: int) -> list[dict]:
    """MSRVTT-MC style: the clip's own caption among 4 other clips' captions, no question."""
    options = [sample_meta("", (n + k) % 6, "test")["captions"][0] for k in range(5)]
    right = n % 5
    options[0], options[right] = options[right], options[0]
    return [{"question": "", "answer": options[right], "answer_type": "caption", "options": options,
             "answer_idx": right}]


def fill_in_the_blank(n: int) -> list[dict]:
    """LSMDC-FiB style: the colour word of the caption blanked."""
    return [{"question": f"a _____ circle {MOTIONS[n % 6]}", "answer": COLOURS[n % 6], "answer_type": "fib",
             "options": None, "answer_idx": None}]


@pytest.fixture(scope="session")
def shard_root(tmp_path_factory) -> Path:
    """data/shards/{ret,qa,mc}_{train,test}, mc_caption_test, fib_test: 6 clips each, one shard per set."""
    root = tmp_path_factory.mktemp("shards")
    clips = []
    for pattern in PATTERNS:
        path = root / f"{pattern}.mp4"
        make_clip(path, pattern, 2.0)
        clips.append(path.read_bytes())
        path.unlink()
    for name in ("ret_train", "ret_test", "qa_train", "qa_test", "mc_train", "mc_test", "mc_caption_test", "fib_test"):
        folder = root / name
        folder.mkdir()
        with wds.TarWriter(str(folder / "shard-000000.tar")) as sink:
            for n in range(6):
                key = f"clip_{name}_{n:03d}"
                meta = sample_meta(key, n, name.split("_")[1])
                if name.startswith("qa"):
                    meta["captions"], meta["qa"] = [], qa_open(n)
                if name.startswith("mc_caption"):  # as the msrvtt_mc reader writes it: the right caption kept
                    meta["qa"] = caption_choice(n)
                    meta["captions"] = [meta["qa"][0]["answer"]]
                elif name.startswith("mc"):
                    meta["captions"], meta["qa"] = [], qa_choice(n)
                if name.startswith("fib"):
                    meta["captions"], meta["qa"] = [], fill_in_the_blank(n)
                sink.write({"__key__": key, "mp4": clips[n], "json": json.dumps(meta).encode()})
    # temporal-order pairs over the first four test clips (two pairs), in the generic format
    events = [(f"a {COLOURS[n]} circle {MOTIONS[n]}", f"a {COLOURS[n + 1]} square {MOTIONS[n + 1]}") for n in (0, 2)]
    pairs = []
    for n, (a, b) in zip((0, 2), events):
        pairs += [{"key": f"clip_ret_test_{n:03d}", "caption": f"{a}, then {b}", "swapped_caption": f"{b}, then {a}",
                   "pair_id": f"pair_{n}"},
                  {"key": f"clip_ret_test_{n + 1:03d}", "caption": f"{b}, then {a}", "swapped_caption": f"{a}, then {b}",
                   "pair_id": f"pair_{n}"}]
    (root / "order_pairs.json").write_text(json.dumps(pairs))
    return root


def write_checkpoint(folder: Path, params: dict, recipe: str, seed: int) -> Path:
    """A tiny SMAUG with its own random init, saved as train.pretrain saves it."""
    import torch

    from train.checkpoint import save_checkpoint
    from train.data import LoaderConfig
    from train.model import SMAUG, ModelConfig

    model_cfg = section(params, ModelConfig, "model")
    torch.manual_seed(seed)
    model = SMAUG(model_cfg)
    state = {"recipe": recipe, "params": params, "model_config": to_dict(model_cfg),
             "loader_config": to_dict(section(params, LoaderConfig, "loader")), "finished": True}
    return save_checkpoint(folder, model, step=1, state=state)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, shard_root) -> dict:
    """A params file (fragments + tiny model + paths into a temp tree) and pre-trained
    checkpoints for smaug and dense."""
    base = tmp_path_factory.mktemp("ws")
    params_path = base / "params.yaml"
    params_path.write_text(yaml.safe_dump(params_dict()))
    common = [
        *TINY,
        f"finetune.init_dir={base / 'models/pretrain'}", f"finetune.out_dir={base / 'models/finetune'}",
        f"finetune.retrieval.shards={shard_root / 'ret_train'}", f"finetune.qa.shards={shard_root / 'qa_train'}",
        f"finetune.mc.shards={shard_root / 'mc_train'}",
        "finetune.retrieval.batch_size=3", "finetune.qa.batch_size=3", "finetune.mc.batch_size=3",
        "finetune.retrieval.steps=3", "finetune.qa.steps=3", "finetune.mc.steps=3",
        "finetune.retrieval.warmup=1", "finetune.qa.warmup=1", "finetune.mc.warmup=1",
        "finetune.retrieval.ckpt_every=0", "finetune.qa.ckpt_every=0", "finetune.mc.ckpt_every=0",
        "finetune.qa.vocab_size=8", "finetune.threads=1",
        f"eval.pretrain_dir={base / 'models/pretrain'}", f"eval.finetune_dir={base / 'models/finetune'}",
        f"eval.retrieval.shards={shard_root / 'ret_test'}", f"eval.qa.shards={shard_root / 'qa_test'}",
        f"eval.mc.shards={shard_root / 'mc_test'}", f"eval.mc_caption.shards={shard_root / 'mc_caption_test'}",
        f"eval.fib.shards={shard_root / 'fib_test'}", "eval.retrieval.rerank_k=3", "eval.batch_size=4",
        f"eval.retrieval.order_pairs={shard_root / 'order_pairs.json'}", "eval.bootstrap=200",
        f"eval.metrics_dir={base / 'results/metrics'}", f"eval.plots_dir={base / 'results/plots'}",
        f"eval.details_dir={base / 'results/eval'}", f"tables.eval_dir={base / 'results/eval'}",
        "eval.threads=1",
        f"tables.metrics_dir={base / 'results/metrics'}", f"tables.out_dir={base / 'results/tables'}",
        f"tables.bench={base / 'results/bench/pretrain.json'}",
        f"tables.cost_plot={base / 'results/plots/cost_vs_accuracy.png'}",
        f"tables.ablation_dir={base / 'results/ablation'}",
        "tables.runs=null",  # every run evaluated here (params.yaml names smaug alone)
        f"pretrain.results_dir={base / 'results'}",
    ]
    for i, recipe in enumerate(("smaug", "dense")):
        params = load_params(params_path, recipe=recipe, overrides=common)
        write_checkpoint(base / "models/pretrain" / recipe, params, recipe, seed=i)
    return {"base": base, "params_path": params_path, "overrides": common,
            "params": lambda *extra: load_params(params_path, overrides=[*common, *extra])}


def tiny_model_and_batches(workspace: dict, shards: Path, text: str, batch_size: int):
    """(model, tokenizer, test batches) of the tiny pre-trained smaug on one shard set."""
    from train.checkpoint import loader_config_of, model_config_of, read_state, resolve_checkpoint
    from train.data import build_loader
    from train.data.text import load_tokenizer
    from train.model import SMAUG

    folder = resolve_checkpoint(workspace["base"] / "models/pretrain/smaug")
    model = SMAUG.from_pretrained(folder).eval()
    state = read_state(folder)
    cfg = loader_config_of(state, workspace["params"](), num_frames=None, batch_size=batch_size)
    batches = list(build_loader(cfg, str(shards), train=False, text=text, seed=0))
    return model, load_tokenizer(model_config_of(state).text.path), batches


def make_clip(path: Path, pattern: str, seconds: float) -> None:
    make_h264_clip(path, pattern, seconds, width=WIDTH, height=HEIGHT, fps=FPS)
