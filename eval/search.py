"""Search your videos with text; export features for other tools.

    python -m eval.search index --checkpoint DIR --videos DIR|SHARDS --out INDEX.parquet [--tokens]
    python -m eval.search query --index INDEX.parquet "a red ball bounces" [-k 10] [--html OUT.html] [--rerank-vtm]
    python -m eval.search embed-video --checkpoint DIR --videos DIR|SHARDS --out FEATS.npy|.parquet
    python -m eval.search embed-text --checkpoint DIR [--file LINES.txt] ["a caption" ...] --out FEATS.npy|.parquet

Videos are encoded as retrieval evaluation encodes them (``eval.embed``: raw files through the
project's own normalising and the loader's evaluation plan, shards through the evaluation
loader; token sparsification as trained), and a query is ranked by VTC similarity, so for a
test set's captions the right video is in the top 10 exactly as often as evaluation's R@10
says. ``--rerank-vtm`` re-orders the top k by the matching head plus the VTC similarity
(``eval.retrieval.rerank_top_k``, BLIP's rule, as ``eval.retrieval.rerank_add_vtc``); it needs
the video tokens, which ``index --tokens`` stores.

The index is one Parquet file: ``key``, ``source`` (file path, or ``shards#key``), ``embedding``
(L2-normalised float32), ``frames`` (JPEG thumbnails of the frames the model saw, for
``--html``) and, with ``--tokens``, ``tokens``; its schema metadata names the checkpoint (path +
sha256), and a query with another checkpoint is refused. Unreadable files are skipped, named
and counted at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import cli

META_KEY = b"smaug_search"
INDEX_COLUMNS = ("key", "source", "embedding")


@dataclass
class SearchIndex:
    path: Path
    keys: list[str]
    sources: list[str]
    feats: torch.Tensor                 # [N, E]
    frames: list[list[bytes]]
    tokens: torch.Tensor | None         # [N, 1+n, D] or None
    meta: dict


# --------------------------------------------------------------------------- files


def write_features(emb, path: str | Path, meta: dict, *, with_frames: bool = True, with_tokens: bool = False) -> Path:
    """``.parquet`` (key, source, embedding[, frames, tokens]) or ``.npy`` (the matrix, with the
    keys one a line in ``<name>.keys.txt`` beside it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matrix = emb.matrix()
    if path.suffix == ".npy":
        np.save(path, matrix)
        path.with_suffix(".keys.txt").write_text("".join(k + "\n" for k in emb.keys))
        return path
    if path.suffix != ".parquet":
        raise ValueError(f"{path}: --out must end in .parquet or .npy")
    columns = {"key": pa.array(emb.keys, pa.string()), "source": pa.array(emb.sources, pa.string()),
               "embedding": pa.array(list(matrix), pa.list_(pa.float32()))}
    if with_frames:
        columns["frames"] = pa.array(emb.frames, pa.list_(pa.binary()))
    if with_tokens:
        shapes = {t.shape for t in emb.tokens}
        if len(shapes) > 1:
            raise ValueError(f"clips gave video tokens of different shapes {sorted(shapes)}; cannot store them")
        meta = {**meta, "token_shape": list(next(iter(shapes), ()))}
        columns["tokens"] = pa.array([t.reshape(-1) for t in emb.tokens], pa.list_(pa.float32()))
    table = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # a reader never sees half an index
    return path


def read_index(path: str | Path) -> SearchIndex:
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index (make one with `python -m eval.search index`)")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several kinds for a file that is not Parquet
        raise ValueError(f"{path}: not a readable Parquet index ({err})") from None
    missing = [c for c in INDEX_COLUMNS if c not in table.column_names]
    raw_meta = (table.schema.metadata or {}).get(META_KEY)
    if missing or raw_meta is None:
        what = f"column {missing[0]!r}" if missing else "its checkpoint (schema metadata)"
        raise ValueError(f"{path}: not an index written by `python -m eval.search index`: no {what}")
    meta = json.loads(raw_meta)
    feats = torch.tensor(np.array(table.column("embedding").to_pylist(), dtype=np.float32))
    tokens = None
    if "tokens" in table.column_names:
        shape = meta["token_shape"]
        tokens = torch.tensor(np.array(table.column("tokens").to_pylist(), dtype=np.float32)).view(-1, *shape)
    frames = table.column("frames").to_pylist() if "frames" in table.column_names else [[] for _ in range(len(table))]
    return SearchIndex(path, table.column("key").to_pylist(), table.column("source").to_pylist(), feats,
                       frames, tokens, meta)


def read_texts(texts: list[str], file: str | None) -> list[str]:
    out = list(texts)
    if file:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such text file (one text a line)")
        out += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise ValueError("no text given: pass texts as arguments or --file with one a line")
    return out


# --------------------------------------------------------------------------- searching


def checkpoint_for(index: SearchIndex, override: str | None):
    """The model the index was made with; another checkpoint (other weights) is refused."""
    from train.checkpoint import sha256_file
    from train.model import SMAUG

    folder = override or index.meta["checkpoint"]["path"]
    model = SMAUG.from_pretrained(folder)
    digest = sha256_file(Path(model.checkpoint_dir) / "model.safetensors")
    if digest != index.meta["checkpoint"]["sha256"]:
        raise ValueError(f"{index.path}: made with checkpoint {index.meta['checkpoint']['path']} (sha256 "
                         f"{index.meta['checkpoint']['sha256'][:12]}), but {folder} has sha256 {digest[:12]}: "
                         "its embeddings would not be comparable; rebuild the index with this checkpoint")
    return model


@torch.no_grad()
def search(model, index: SearchIndex, queries: list[str], k: int = 10, *, rerank_vtm: bool = False) -> list[list[dict]]:
    """Top-``k`` hits per query: dicts with rank, score, row, key, source, frames.

    VTC ranking is ``text_feat @ video_feat`` (as in evaluation; ``torch.topk`` order, ties by
    row). ``rerank_vtm``: the top k re-ordered by VTM logit + VTC similarity."""
    from eval.retrieval import encode_texts, has_vtm, rerank_top_k
    from eval.embed import loader_settings
    from train.data.text import load_tokenizer

    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    if len(index.keys) == 0:
        raise ValueError(f"{index.path}: the index holds no videos")
    k = min(k, len(index.keys))
    tokenizer = load_tokenizer(model.cfg.text.path)
    hidden, mask, text_feats = encode_texts(model, tokenizer, queries, loader_settings(model).max_len)
    scores = text_feats @ index.feats.t()  # [Q, N]
    if rerank_vtm:
        if index.tokens is None:
            raise ValueError(f"{index.path}: holds no video tokens, which --rerank-vtm needs; rebuild it with "
                             "`python -m eval.search index --tokens ...`")
        if not has_vtm(model):
            raise ValueError(f"{model.checkpoint_dir}: this model has no VTM head (objectives.vtm was 0)")
        device = next(model.parameters()).device

        def score_pairs(text_idx, video_idx):
            fused = model.fuse(hidden[text_idx].to(device), mask[text_idx].to(device),
                               index.tokens[video_idx].to(device))
            return model.vtm_score(fused).float().cpu()

        scores = rerank_top_k(scores, k, score_pairs, add_sim=True).float()
    top = scores.topk(k, dim=1)
    results = []
    for q in range(len(queries)):
        hits = []
        for rank, (score, row) in enumerate(zip(top.values[q].tolist(), top.indices[q].tolist()), start=1):
            hits.append({"rank": rank, "score": float(score), "row": row, "key": index.keys[row],
                         "source": index.sources[row], "frames": index.frames[row]})
        results.append(hits)
    return results


# --------------------------------------------------------------------------- commands


def fingerprint_of(model) -> dict:
    from train.checkpoint import fingerprint

    return fingerprint(model.checkpoint_dir)


def report_skipped(emb) -> None:
    if emb.skipped:
        print(f"skipped {len(emb.skipped)} unreadable file(s):", file=sys.stderr)
        for item in emb.skipped:
            print(f"  {item.source}: {item.reason}", file=sys.stderr)


def cmd_embed_video(args, *, as_index: bool) -> int:
    from eval.embed import embed_videos
    from train.model import SMAUG

    model = SMAUG.from_pretrained(args.checkpoint)
    emb = embed_videos(model, args.videos, batch_size=args.batch_size, keep_tokens=as_index and args.tokens,
                       keep_frames=as_index, progress=not args.no_progress, view=args.view)
    report_skipped(emb)
    if not emb.keys:
        return cli.fail(f"{args.videos}: no readable video ({len(emb.skipped)} skipped)")
    meta = {"checkpoint": fingerprint_of(model), "videos": str(args.videos), "embed_dim": int(model.cfg.embed_dim)}
    out = write_features(emb, args.out, meta, with_frames=as_index, with_tokens=as_index and args.tokens)
    print(f"{out}: {len(emb.keys)} clips embedded, {len(emb.skipped)} unreadable skipped")
    return 0


def cmd_embed_text(args) -> int:
    from eval.embed import Embedded, embed_texts
    from train.model import SMAUG

    texts = read_texts(args.texts, args.file)
    model = SMAUG.from_pretrained(args.checkpoint)
    feats = embed_texts(model, texts).numpy()
    emb = Embedded(keys=texts, sources=["text"] * len(texts), feats=list(feats))
    out = write_features(emb, args.out, {"checkpoint": fingerprint_of(model), "texts": len(texts)},
                         with_frames=False)
    print(f"{out}: {len(texts)} texts embedded")
    return 0


def cmd_query(args) -> int:
    from eval.search_page import write_page

    index = read_index(args.index)
    queries = read_texts(args.texts, args.file)
    model = checkpoint_for(index, args.checkpoint)
    results = search(model, index, queries, args.k, rerank_vtm=args.rerank_vtm)
    ranking = "VTM + VTC re-ranking of the VTC top-k" if args.rerank_vtm else "VTC similarity"
    for query, hits in zip(queries, results):
        print(f"query: {query!r} (top {len(hits)} of {len(index.keys)} by {ranking})")
        print(f"{'rank':>4}  {'score':>8}  key  source")
        for h in hits:
            print(f"{h['rank']:>4}  {h['score']:>8.4f}  {h['key']}  {h['source']}")
    if args.html:
        if len(queries) > 1:
            return cli.fail("--html writes one page: give one query")
        page = write_page(args.html, queries[0], results[0], index=str(index.path),
                          checkpoint=index.meta["checkpoint"]["path"], ranking=ranking)
        print(f"page: {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.search", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("index", "embed videos into a searchable Parquet index"),
                            ("embed-video", "export video features (.npy or .parquet)")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--checkpoint", required=True, metavar="DIR", help="any checkpoint folder the project writes")
        s.add_argument("--videos", required=True, metavar="DIR|SHARDS",
                       help="a folder of video files (any format ffmpeg reads), or WebDataset shards")
        s.add_argument("--out", required=True, metavar="FILE")
        s.add_argument("--batch-size", type=cli.positive_int, default=8)
        s.add_argument("--view", choices=("whole", "centre"), default=None,
                       help="the frame the model sees: whole (resized to its square) or centre (its centre "
                            "square); default: evaluation's (eval.view's default, centre)")
        s.add_argument("--no-progress", action="store_true")
        if name == "index":
            s.add_argument("--tokens", action="store_true",
                           help="also store the video tokens (needed by query --rerank-vtm; larger file)")
    t = sub.add_parser("embed-text", help="export text features (.npy or .parquet)")
    t.add_argument("--checkpoint", required=True, metavar="DIR")
    t.add_argument("--out", required=True, metavar="FILE")
    t.add_argument("--file", default=None, help="a text file, one text a line")
    t.add_argument("texts", nargs="*")
    q = sub.add_parser("query", help="rank the index's videos for a text")
    q.add_argument("--index", required=True, metavar="FILE")
    q.add_argument("texts", nargs="*", metavar="TEXT")
    q.add_argument("--file", default=None, help="queries from a text file, one a line")
    q.add_argument("-k", type=cli.positive_int, default=10, help="hits to show (default 10)")
    q.add_argument("--html", default=None, metavar="OUT.html", help="write a page with a strip of frames per hit")
    q.add_argument("--rerank-vtm", action="store_true", help="re-rank the top k with the matching head")
    q.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="where the index's checkpoint is now (it must be the same weights)")
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import ConfigError
    from train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "query":
            return cmd_query(args)
        if args.command == "embed-text":
            return cmd_embed_text(args)
        return cmd_embed_video(args, as_index=args.command == "index")
    except (FileNotFoundError, ValueError, CheckpointError, ConfigError) as err:
        return cli.fail(err)


if __name__ == "__main__":
    sys.exit(main())
