"""Searching videos with text (eval.search), one-call loading (SMAUG.from_pretrained) and the
README example, on real shards, real video files and tiny real checkpoints (tests/eval/conftest.py).

The agreement test uses the built-in benchmark's test shards (data/shards/ret_test, 100 videos,
500 captions) when `dvc repro` has built them, and the fixture's test shards otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from eval import search as search_mod
from tests.eval.conftest import make_clip

REPO = Path(__file__).resolve().parents[2]
BENCHMARK_TEST = REPO / "data/shards/ret_test"


@pytest.fixture(scope="module")
def ckpt(workspace) -> Path:
    return workspace["base"] / "models/pretrain/smaug"


@pytest.fixture(scope="module")
def raw_videos(tmp_path_factory, ckpt) -> dict:
    """Raw files in three containers plus one broken file, and shards made from the same files
    by the project's own normalising (what `python -m preprocess` writes per sample)."""
    from eval.embed import preprocess_settings
    from preprocess.normalise import normalise_video
    from preprocess.probe import probe_source
    from train.model import SMAUG

    root = tmp_path_factory.mktemp("raw")
    folder = root / "videos"
    (folder / "sub").mkdir(parents=True)
    make_clip(folder / "alpha.mp4", "testsrc2", 2.0)
    for name, pattern, ext in (("beta", "smptebars", "webm"), ("sub/gamma", "rgbtestsrc", "gif")):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=size=80x60:rate=8:duration=1.5",
                        str(folder / f"{name}.{ext}")], check=True)
    (folder / "broken.mp4").write_text("this is not a video")
    pre_cfg = preprocess_settings(SMAUG.from_pretrained(ckpt))
    shards = root / "shards"
    shards.mkdir()
    with wds.TarWriter(str(shards / "shard-000000.tar")) as sink:
        for key, path in (("alpha", folder / "alpha.mp4"), ("beta", folder / "beta.webm"),
                          ("sub/gamma", folder / "sub/gamma.gif")):
            [out] = normalise_video(path, probe_source(path, pre_cfg), root, "norm", pre_cfg)
            meta = {"key": key, "source": str(path), "captions": [f"clip {key}"], "video": out["video"]}
            sink.write({"__key__": key.replace("/", "_"), "mp4": Path(out["path"]).read_bytes(),
                        "json": json.dumps(meta).encode()})
    return {"folder": folder, "shards": shards}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = search_mod.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_query_agrees_with_retrieval_evaluation(workspace, ckpt, shard_root, tmp_path, capsys):
    """For every test caption, the right video is in the query's top 10 exactly when evaluation
    ranks it within 10 (VTC, sparsification as trained): the hit rate equals eval's R@10."""
    from eval.config import EvalConfig
    from eval.retrieval import evaluate_retrieval
    from train.checkpoint import loader_config_of, read_state
    from train.data import build_loader
    from train.data.text import load_tokenizer
    from train.model import SMAUG

    shards = BENCHMARK_TEST if (BENCHMARK_TEST / "shard-000000.tar").exists() else shard_root / "ret_test"
    index_path = tmp_path / "index.parquet"
    code, out, _ = run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", shards, "--out", index_path,
                           "--no-progress")
    assert code == 0, out
    assert re.search(r"\d+ clips embedded, 0 unreadable skipped", out)

    state = read_state(ckpt)
    loader_cfg = loader_config_of(state, {}, num_frames=None, batch_size=8)
    model = SMAUG.from_pretrained(ckpt)
    # evaluation's own test view (eval.view's default), which the index must share
    batches = list(build_loader(loader_cfg, str(shards), train=False, text="caption", seed=0,
                                view=EvalConfig().view))
    result = evaluate_retrieval(model, batches, load_tokenizer(model.cfg.text.path), max_len=loader_cfg.max_len,
                                rerank_k=0, curve_ks=(10,))
    emb = result["embeddings"]
    index = search_mod.read_index(index_path)
    assert sorted(index.keys) == emb.keys
    k = min(10, len(emb.keys))
    hits = search_mod.search(model, index, emb.texts, k)
    found = [emb.keys[owner] in {h["key"] for h in q} for q, owner in zip(hits, emb.text_to_video)]
    eval_found = [rank <= 10 for rank in result["per_query"]["vtc"]]
    assert found == eval_found
    assert 100.0 * sum(found) / len(found) == pytest.approx(result["vtc"]["t2v"]["R@10"], abs=1e-9)

    # the command line prints the same ranking, with scores
    code, out, _ = run_cli(capsys, "query", "--index", index_path, emb.texts[0], "-k", 3)
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [r[2] for r in rows] == [h["key"] for h in hits[0][:3]]
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_folder_of_files_embeds_as_evaluation_does(raw_videos, ckpt, tmp_path, capsys):
    """Raw files (mp4, webm, gif in a sub-folder) give the embeddings the evaluation loader gives
    for shards made from them; the broken file is skipped, named and counted."""
    folder_index, shard_index = tmp_path / "files.parquet", tmp_path / "shards.parquet"
    code, out, err = run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", raw_videos["folder"],
                             "--out", folder_index, "--no-progress")
    assert code == 0
    assert "3 clips embedded, 1 unreadable skipped" in out
    assert "skipped 1 unreadable file(s)" in err and "broken.mp4" in err
    assert run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", raw_videos["shards"], "--out", shard_index,
                   "--no-progress")[0] == 0
    files, shards = search_mod.read_index(folder_index), search_mod.read_index(shard_index)
    assert files.keys == ["alpha", "beta", "sub/gamma"]
    assert files.sources[0] == str(raw_videos["folder"] / "alpha.mp4")
    by_key = dict(zip(shards.keys, shards.feats))
    for key, feat in zip(files.keys, files.feats):
        # (a shard key cannot hold '/': the sample was written as sub_gamma)
        assert torch.allclose(feat, by_key[key.replace("/", "_")], atol=1e-5), key
    assert not torch.allclose(files.feats[0], files.feats[1], atol=1e-3)  # different clips differ

    # exports: .npy with its keys, and Parquet, both equal to the index
    npy = tmp_path / "feats.npy"
    assert run_cli(capsys, "embed-video", "--checkpoint", ckpt, "--videos", raw_videos["folder"], "--out", npy,
                   "--no-progress")[0] == 0
    assert np.allclose(np.load(npy), files.feats.numpy(), atol=1e-6)
    assert (tmp_path / "feats.keys.txt").read_text().split() == files.keys
    # --view whole: the 4:3 clips' whole frames, not the centre squares the default embeds
    whole = tmp_path / "whole.npy"
    assert run_cli(capsys, "embed-video", "--checkpoint", ckpt, "--videos", raw_videos["folder"], "--out", whole,
                   "--view", "whole", "--no-progress")[0] == 0
    assert not np.allclose(np.load(whole), files.feats.numpy(), atol=1e-3)
    texts = tmp_path / "texts.parquet"
    assert run_cli(capsys, "embed-text", "--checkpoint", ckpt, "--out", texts, "a red circle", "a blue square")[0] == 0
    import pyarrow.parquet as pq

    table = pq.read_table(texts)
    assert table.column("key").to_pylist() == ["a red circle", "a blue square"]
    vecs = np.array(table.column("embedding").to_pylist())
    assert vecs.shape == (2, 16) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_bad_input_is_named(raw_videos, ckpt, tmp_path, capsys):
    code, _, err = run_cli(capsys, "query", "--index", tmp_path / "missing.parquet", "x")
    assert code == 2 and "missing.parquet: no such index" in err
    code, _, err = run_cli(capsys, "index", "--checkpoint", tmp_path / "nowhere", "--videos", raw_videos["folder"],
                           "--out", tmp_path / "i.parquet")
    assert code == 2 and "nowhere" in err and "no checkpoint here" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", tmp_path / "empty",
                           "--out", tmp_path / "i.parquet", "--no-progress")
    assert code == 2 and "no readable video" in err and not (tmp_path / "i.parquet").exists()


def test_links_out_of_the_folder_or_nowhere_are_named_not_read(raw_videos, ckpt, tmp_path, capsys):
    """As preprocessing does: a link out of the folder is refused, a broken one is named."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes((raw_videos["folder"] / "alpha.mp4").read_bytes())
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "alpha.mp4").write_bytes((raw_videos["folder"] / "alpha.mp4").read_bytes())
    (folder / "escape.mp4").symlink_to(outside / "secret.mp4")
    (folder / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (folder / "inside.mp4").symlink_to("alpha.mp4")  # a link that stays inside is fine
    code, out, err = run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", folder,
                             "--out", tmp_path / "i.parquet", "--no-progress")
    assert code == 0 and "2 clips embedded, 2 unreadable skipped" in out
    assert "escape.mp4: outside the videos folder" in err and "gone.mp4: broken link" in err
    assert search_mod.read_index(tmp_path / "i.parquet").keys == ["alpha", "inside"]


def test_rerank_vtm_reorders_the_top_k(raw_videos, ckpt, tmp_path, capsys):
    plain, with_tokens = tmp_path / "plain.parquet", tmp_path / "tokens.parquet"
    for path, extra in ((plain, []), (with_tokens, ["--tokens"])):
        assert run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", raw_videos["folder"], "--out", path,
                       "--no-progress", *extra)[0] == 0
    code, _, err = run_cli(capsys, "query", "--index", plain, "a clip", "--rerank-vtm")
    assert code == 2 and "--tokens" in err
    from train.model import SMAUG

    model = SMAUG.from_pretrained(ckpt)
    index = search_mod.read_index(with_tokens)
    vtc = search_mod.search(model, index, ["a clip"], 2)[0]
    vtm = search_mod.search(model, index, ["a clip"], 2, rerank_vtm=True)[0]
    assert {h["key"] for h in vtm} == {h["key"] for h in vtc}  # only the top k are re-ordered
    fused = model.fuse(*[t[None] for t in _text(model, "a clip")], index.tokens[[vtm[0]["row"]]])
    expected = model.vtm_score(fused).item() + float(index.feats[vtm[0]["row"]] @ _feat(model, "a clip"))
    assert vtm[0]["score"] - vtm[1]["score"] == pytest.approx(
        expected - (model.vtm_score(model.fuse(*[t[None] for t in _text(model, "a clip")],
                                               index.tokens[[vtm[1]["row"]]])).item()
                    + float(index.feats[vtm[1]["row"]] @ _feat(model, "a clip"))), abs=1e-3)


def _text(model, text):
    from eval.retrieval import encode_texts
    from train.data.text import load_tokenizer

    hidden, mask, _ = encode_texts(model, load_tokenizer(model.cfg.text.path), [text], 16)
    return hidden[0], mask[0]


def _feat(model, text):
    from eval.embed import embed_texts

    return embed_texts(model, [text])[0]


def test_html_page_renders_in_headless_chromium(raw_videos, ckpt, tmp_path, capsys):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/setup.sh --test installs Debian's chromium)")
    index, page = tmp_path / "index.parquet", tmp_path / "page.html"
    assert run_cli(capsys, "index", "--checkpoint", ckpt, "--videos", raw_videos["folder"], "--out", index,
                   "--no-progress")[0] == 0
    code, out, _ = run_cli(capsys, "query", "--index", index, "a colourful test pattern", "-k", 3, "--html", page)
    assert code == 0 and f"page: {page}" in out
    text = page.read_text()
    assert text.count('src="data:image/jpeg;base64,') == 3 * 2  # 3 hits x 2 frames, inlined
    shot = tmp_path / "shot.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=900,600", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (600, 900)
    assert pixels.var() > 100.0  # a blank (or an unrendered) page is one flat colour
    # the frame strips are there: many distinct colours, not just text on a plain background
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500


def test_from_pretrained_loads_pretrain_and_task_folders(workspace, ckpt, tmp_path):
    from train.finetune import run_finetune
    from train.model import SMAUG
    from train.tasks import load_task_model

    model = SMAUG.from_pretrained(ckpt)
    assert isinstance(model, SMAUG) and not model.training and model.checkpoint_state["recipe"] == "smaug"
    out = tmp_path / "qa"
    run_finetune(workspace["params"]("finetune.qa.steps=1", "finetune.qa.warmup=0", "log.tensorboard=true"),
                 "qa", "smaug", out=out, progress=False)
    # fine-tuning logs through the same module: TensorBoard events of its one step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workspace["base"] / "results/tensorboard/finetune-smaug-qa"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1]
    task_model = SMAUG.from_pretrained(out)
    module, _ = load_task_model(out)
    assert isinstance(task_model, SMAUG) and task_model.checkpoint_state["task"] == "qa"
    for (name, a), (_, b) in zip(task_model.state_dict().items(), module.model.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="no checkpoint here"):
        SMAUG.from_pretrained(tmp_path / "nowhere")


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example: from_pretrained -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its from_pretrained example"
    return match.group(1)


def test_readme_example_runs_as_written(raw_videos, ckpt, monkeypatch, capsys):
    """The README's from_pretrained block, exactly as written, against a tiny checkpoint and a
    real video file (the example reads both paths from environment variables with defaults)."""
    from eval.embed import embed_texts, embed_video_files
    from train.model import SMAUG

    code = readme_example()
    assert len(code.strip().splitlines()) <= 6
    video_file = raw_videos["folder"] / "alpha.mp4"
    monkeypatch.setenv("SMAUG_MODEL", str(ckpt))
    monkeypatch.setenv("SMAUG_VIDEO", str(video_file))
    exec(compile(code, "README.md", "exec"), {})
    printed = [float(v) for v in re.findall(r"-?\d+\.\d+", capsys.readouterr().out)]
    captions = re.findall(r'"([^"]+)"', code[code.index("embed_texts("):])
    model = SMAUG.from_pretrained(ckpt)
    expected = (embed_texts(model, captions) @ embed_video_files(model, [video_file]).T).flatten().tolist()
    assert len(printed) == len(captions) == 2
    assert printed == pytest.approx(expected, abs=1e-3)
