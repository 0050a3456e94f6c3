"""Text-to-video and video-to-text retrieval: VTC ranking, optional VTM re-ranking.

Two steps, as in ALBEF/ALPRO/Singularity:

1. rank every candidate by the dot product of the L2-normalised unimodal features (VTC);
2. optionally, re-score only the top ``k`` candidates of each query with the fusion
   encoder's video-text matching head (VTM) and reorder those ``k`` by it. Candidates
   outside the top ``k`` keep their VTC order *below* the re-ranked ones, so re-ranking can
   never pull an item into the top ``k`` nor push one out of it. With ``add_sim`` the
   re-ranking score is the VTM logit plus the VTC cosine similarity (BLIP's rule): a VTM
   head that has not learned yet (a constant logit) then leaves the VTC order as it was
   instead of shuffling the top ``k``, and a trained one still dominates (logits span
   several units, cosines less than one).

Multiple captions per video: every caption is a text-to-video query; in video-to-text a
video counts as found when any of its captions is ranked high enough (metrics.py gives the
tie rule). Paragraph retrieval (DiDeMo, ActivityNet Captions) joins each video's captions
into one text, so there is one query per video.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from tqdm import tqdm

from eval.metrics import (bootstrap_recall_ci, groups_to_mask, ranks_from_scores, recall_summary,
                          retrieval_metrics)
from eval.ensemble import FrameEnsemble, group_batches
from eval.shuffle import shuffle_frames
from train.data import text

# (text indices [M], video indices [M]) -> VTM logits [M]
REPORTED_KS = (1, 5, 10)

PairScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rerank_top_k(sim: torch.Tensor, k: int, score_pairs: PairScorer, *, queries_are_texts: bool = True,
                 chunk: int = 64, add_sim: bool = False) -> torch.Tensor:
    """Scores whose order equals: top-k of ``sim`` by VTM, then the rest by ``sim`` (candidates
    tied at the k-th score are all re-ranked).

    sim: [Q, N] VTC similarities. Returns a new [Q, N] matrix; only the order matters.
    score_pairs is called with (text idx, video idx) pairs, whichever side the queries are.
    ``add_sim``: order the top k by VTM logit + ``sim`` instead of the logit alone.
    """
    if k <= 0:
        return sim.clone()
    k = min(k, sim.shape[1])
    out = sim.clone().double()
    # The block is every candidate scoring at least the k-th score: candidates tied there all
    # enter it (more than k then), as ranks count ties against the right answer. torch.topk
    # would pick among them by index and let a tied right answer in for free (a constant
    # scorer would get R@k > 0 re-ranked, 0 by VTC).
    kth = sim.topk(k, dim=1).values[:, -1:]  # [Q, 1]
    for start in tqdm(range(0, sim.shape[0], chunk), desc=f"VTM re-rank top-{k}", leave=False,
                      disable=sim.shape[0] <= chunk):
        stop = min(start + chunk, sim.shape[0])
        rows, cand_idx = (sim[start:stop] >= kth[start:stop]).nonzero(as_tuple=True)
        query_idx = rows + start
        if queries_are_texts:
            vtm = score_pairs(query_idx, cand_idx)
        else:
            vtm = score_pairs(cand_idx, query_idx)
        vtm = vtm.double()
        if add_sim:
            vtm = vtm + sim[query_idx, cand_idx].double()
        # lift the re-ranked block above every VTC score of its row
        lowest = torch.full((stop - start,), float("inf"), dtype=torch.float64)
        lowest = lowest.scatter_reduce(0, rows, vtm, reduce="amin")
        shift = out[start:stop].max(dim=1).values - lowest + 1.0
        out[query_idx, cand_idx] = vtm + shift[rows]
    return out


def ranking_scores(sim_t2v: torch.Tensor, *, k: int = 0, score_pairs: PairScorer | None = None,
                   add_sim: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(t2v scores [T, V], v2t scores [V, T]): VTC only (k=0) or with VTM re-ranking of the top k."""
    if k > 0 and score_pairs is None:
        raise ValueError("VTM re-ranking needs score_pairs")
    if k <= 0:
        return sim_t2v, sim_t2v.t()
    return (rerank_top_k(sim_t2v, k, score_pairs, queries_are_texts=True, add_sim=add_sim),
            rerank_top_k(sim_t2v.t(), k, score_pairs, queries_are_texts=False, add_sim=add_sim))


def rank_retrieval(sim_t2v: torch.Tensor, text_to_video: Sequence[int], *, k: int = 0,
                   score_pairs: PairScorer | None = None, ks: Iterable[int] = (1, 5, 10),
                   add_sim: bool = False) -> dict:
    """t2v and v2t metrics, VTC only (k=0) or with VTM re-ranking of the top k."""
    t2v_scores, v2t_scores = ranking_scores(sim_t2v, k=k, score_pairs=score_pairs, add_sim=add_sim)
    t2v = retrieval_metrics(t2v_scores, text_to_video, ks)["t2v"]
    v2t = retrieval_metrics(v2t_scores.t(), text_to_video, ks)["v2t"]
    return {"t2v": t2v, "v2t": v2t}


# --------------------------------------------------------------------------- model side


@dataclass
class RetrievalEmbeddings:
    """Everything retrieval needs from one pass of the model over a test set."""

    keys: list[str]                 # video keys, candidate order
    video_tokens: torch.Tensor      # [V, N, D] for VTM
    video_feats: torch.Tensor       # [V, E] L2-normalised
    texts: list[str]                # one per query
    text_to_video: list[int]        # [num_texts]
    text_hidden: torch.Tensor       # [num_texts, L, Dt]
    text_mask: torch.Tensor         # [num_texts, L]
    text_feats: torch.Tensor        # [num_texts, E]

    def similarity(self) -> torch.Tensor:
        return self.text_feats @ self.video_feats.t()


def texts_of(meta: dict, paragraph: bool) -> list[str]:
    captions = [c for c in meta.get("captions") or [] if c and c.strip()]
    if not captions:
        raise ValueError(f"sample {meta.get('key')!r} has no caption; a retrieval test set needs one per video")
    return [" ".join(c.strip() for c in captions)] if paragraph else captions


def tokenize(tokenizer, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded to the longest of ``texts`` (at most ``max_len``): short captions cost less."""
    return text.tokenize(tokenizer, texts, max_len, longest=True)


_WINDOW_SUFFIX = re.compile(r"_w\d{3,}$")  # _w000 ... _w999, _w1000 ...


def candidate_of(meta: dict, key: str) -> str:
    """The test video a loaded sample belongs to. A video longer than preprocess.max_window_s is
    sharded as windows ``<key>_w000``, ``<key>_w001`` ... (preprocess/normalise.py), each
    carrying the video's captions: they are one candidate, so its captions are queried once and
    a hit on any part of the video is a hit, as in long-video retrieval (ActivityNet, DiDeMo)."""
    window = (meta.get("normalize") or {}).get("window")
    return _WINDOW_SUFFIX.sub("", key) if window and window.get("count", 1) > 1 else key


def pool_windows(encoded: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, feature) of a video from its windows' (one window: unchanged): the mean of the
    windows' L2-normalised features, normalised again (a mean ensemble, eval/ensemble.py), and
    the mean of their tokens for VTM."""
    if len(encoded) == 1:
        return encoded[0]
    tokens = torch.stack([t for t, _ in encoded]).mean(0)
    return tokens, torch.nn.functional.normalize(torch.stack([f for _, f in encoded]).mean(0), dim=-1)


@torch.no_grad()
def embed_retrieval_set(model, batches, tokenizer, *, max_len: int, paragraph: bool = False,
                        shuffle_seed: int | None = None, text_batch: int = 64,
                        reuse_texts: RetrievalEmbeddings | None = None, sparsify: bool = True,
                        video_memo=None) -> RetrievalEmbeddings:
    """Encode every video once (frames shuffled when ``shuffle_seed`` is set) and every text.

    Candidates are sorted by key, so the result does not depend on the loader's order.
    ``reuse_texts``: an earlier pass over the same set whose text encodings are taken as they
    are (the shuffle test changes only the videos). ``sparsify=False`` encodes every visible token
    (a model trained with token sparsification, evaluated without it: ``eval.retrieval.sparsify``).
    ``video_memo`` (eval/video_memo.py): encoded clips kept for the caption tests on the same clips.
    """
    model.eval()
    device = next(model.parameters()).device
    windows: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}  # candidate -> sample key -> encodings
    captions: dict[str, list[str]] = {}
    for batch in tqdm(batches, desc="encode videos", leave=False):
        video = batch["video"].to(device)
        if shuffle_seed is not None:
            video = shuffle_frames(video, batch["key"], shuffle_seed)
        tok, feat = (model.encode_video(video, mask=False, sparsify=sparsify) if video_memo is None
                     else video_memo.encode(model, video, sparsify=sparsify))
        for i, key in enumerate(batch["key"]):
            candidate = candidate_of(batch["meta"][i], key)
            # setdefault: a loader that repeats samples must not create duplicate candidates
            windows.setdefault(candidate, {}).setdefault(key, (tok[i].float().cpu(), feat[i].float().cpu()))
            captions.setdefault(candidate, texts_of(batch["meta"][i], paragraph))
    if not windows:
        raise ValueError("the retrieval test set is empty")
    per_key = {c: (*pool_windows([w[k] for k in sorted(w)]), captions[c]) for c, w in windows.items()}
    keys = sorted(per_key)
    texts, owner = [], []
    for v, key in enumerate(keys):
        texts += per_key[key][2]
        owner += [v] * len(per_key[key][2])
    video_tokens = torch.stack([per_key[k][0] for k in keys])
    video_feats = torch.stack([per_key[k][1] for k in keys])
    if reuse_texts is not None:
        if reuse_texts.keys != keys or reuse_texts.texts != texts:
            raise ValueError("reuse_texts comes from a different test set")
        return RetrievalEmbeddings(keys, video_tokens, video_feats, texts, owner, reuse_texts.text_hidden,
                                   reuse_texts.text_mask, reuse_texts.text_feats)
    hidden, all_mask, tfeats = encode_texts(model, tokenizer, texts, max_len, text_batch)
    return RetrievalEmbeddings(keys, video_tokens, video_feats, texts, owner, hidden, all_mask, tfeats)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], max_len: int, text_batch: int = 64):
    """(hidden [N, L, Dt], mask [N, L], feats [N, E]) of ``texts``, on the CPU."""
    device = next(model.parameters()).device
    all_ids, all_mask = tokenize(tokenizer, texts, max_len)  # one padded length for every text
    hidden, tfeats = [], []
    for start in range(0, len(texts), text_batch):
        ids, mask = all_ids[start:start + text_batch], all_mask[start:start + text_batch]
        h, f = model.encode_text(ids.to(device), mask.to(device))
        hidden.append(h.float().cpu())
        tfeats.append(f.float().cpu())
    return torch.cat(hidden), all_mask, torch.cat(tfeats)


def has_vtm(model) -> bool:
    """Whether the model was built with a VTM head (objectives.vtm > 0; MAC's recipe has none)."""
    return getattr(model, "vtm_head", None) is not None


def vtm_pair_scorer(model, emb: RetrievalEmbeddings, batch: int = 32) -> PairScorer:
    device = next(model.parameters()).device

    @torch.no_grad()
    def score(text_idx: torch.Tensor, video_idx: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(text_idx), batch):
            t, v = text_idx[s:s + batch], video_idx[s:s + batch]
            fused = model.fuse(emb.text_hidden[t].to(device), emb.text_mask[t].to(device),
                               emb.video_tokens[v].to(device))
            out.append(model.vtm_score(fused).float().cpu())
        return torch.cat(out)

    return score


def evaluate_retrieval(model, batches, tokenizer, *, max_len: int, rerank_k: int = 0, paragraph: bool = False,
                       shuffle_seed: int | None = None, curve_ks: Sequence[int] = tuple(range(1, 11)),
                       reuse_texts: RetrievalEmbeddings | None = None, rerank_add_sim: bool = True,
                       order_pairs: list[dict] | None = None, bootstrap: int = 0, bootstrap_seed: int = 0,
                       sparsify: bool = True, ensemble: FrameEnsemble | None = None,
                       group_cache: dict | None = None, video_memo=None) -> dict:
    """Full retrieval evaluation of ``model`` on an iterable of loader batches.

    Returns ``vtc`` (the headline ranking) and, when re-ranking and the model has a VTM head,
    ``vtm`` metrics; with ``bootstrap`` resamples each t2v R@K gets ``R@K_ci95`` (over test
    videos); with ``order_pairs`` (eval/order_pairs.py) ``order_pairs`` accuracy and t2v metrics
    of the order-dependent queries (``t2v_order_pairs``: captions of pair clips) apart from the
    rest (``t2v_other``); the per-query t2v ranks (``per_query``, for the claim's paired
    bootstrap); the test-set size, R@1 chance (100 / videos), ``curve``: R@K for K in
    ``curve_ks`` of VTC ranking (for plots), and ``embeddings`` (for ``reuse_texts``; not a metric).

    ``ensemble`` (eval/ensemble.py) with several frame groups: every group of frames is encoded
    as a clip of its own, and the groups' VTC similarities (and VTM logits) of each pair are
    combined; order pairs are then not scored (``order_pairs_skipped``). ``group_cache``: the
    groups' encodings kept between calls on the same batches (the ensemble study's modes differ
    only in how they combine them).
    """
    from eval.order_pairs import score_order_pairs

    ensemble = ensemble or FrameEnsemble()
    embs: list[RetrievalEmbeddings] = []
    for g in range(ensemble.groups):
        key = (ensemble.groups, g, shuffle_seed, sparsify, paragraph)
        if group_cache is not None and key in group_cache:
            embs.append(group_cache[key])
            continue
        group = batches if ensemble.groups == 1 else group_batches(batches, ensemble, g)
        embs.append(embed_retrieval_set(model, group, tokenizer, max_len=max_len, paragraph=paragraph,
                                        shuffle_seed=shuffle_seed, reuse_texts=reuse_texts or (embs[0] if embs else None),
                                        sparsify=sparsify, video_memo=video_memo))
        if group_cache is not None:
            group_cache[key] = embs[-1]
    emb = embs[0]
    sim = ensemble.combine([e.similarity() for e in embs])
    all_ks = sorted(set(REPORTED_KS) | set(curve_ks))
    rankings = {"vtc": (sim, sim.t())}
    use_vtm = rerank_k > 0 and has_vtm(model)
    if use_vtm:
        scorers = [vtm_pair_scorer(model, e) for e in embs]
        rankings["vtm"] = ranking_scores(sim, k=rerank_k, add_sim=rerank_add_sim,
                                         score_pairs=lambda t, v: ensemble.combine([f(t, v) for f in scorers]))
    pair_keys = {e["key"] for e in order_pairs or []}
    in_pair = torch.tensor([emb.keys[v] in pair_keys for v in emb.text_to_video])
    correct = groups_to_mask(emb.text_to_video, range(len(emb.keys)))
    result: dict = {"per_query": {"video": list(emb.text_to_video)}}
    for name, (t2v_scores, v2t_scores) in rankings.items():
        t2v_ranks = ranks_from_scores(t2v_scores, correct)
        result[name] = {"t2v": recall_summary(t2v_ranks, all_ks),
                        "v2t": retrieval_metrics(v2t_scores.t(), emb.text_to_video, all_ks)["v2t"]}
        result["per_query"][name] = [int(r) for r in t2v_ranks]
        if bootstrap:
            ci = bootstrap_recall_ci(t2v_ranks, emb.text_to_video, REPORTED_KS, resamples=bootstrap,
                                     seed=bootstrap_seed)
            result[name]["t2v"].update({f"{k}_ci95": v for k, v in ci.items()})
        if order_pairs and bool(in_pair.any()) and not bool(in_pair.all()):
            result[name]["t2v_order_pairs"] = recall_summary(t2v_ranks[in_pair], REPORTED_KS)
            result[name]["t2v_other"] = recall_summary(t2v_ranks[~in_pair], REPORTED_KS)
    if order_pairs and ensemble.groups > 1:
        result["order_pairs_skipped"] = f"frame ensemble {ensemble.label}: order pairs score one clip"
    elif order_pairs:
        result["order_pairs"] = score_order_pairs(
            model, emb, order_pairs, lambda texts: encode_texts(model, tokenizer, texts, max_len), use_vtm=use_vtm)
    if rerank_k > 0 and not use_vtm:
        result["vtm_skipped"] = "the model has no VTM head (objectives.vtm was 0)"
    result["curve"] = {d: [result["vtc"][d][f"R@{k}"] for k in curve_ks] for d in ("t2v", "v2t")}
    result["curve"]["k"] = list(curve_ks)
    for name in rankings:  # the metrics file keeps the reported Ks only
        for d in ("t2v", "v2t"):
            for k in all_ks:
                if k not in REPORTED_KS:
                    result[name][d].pop(f"R@{k}")
    result["num_videos"] = len(emb.keys)
    result["num_texts"] = len(emb.texts)
    result["chance_R@1"] = 100.0 / len(emb.keys)
    result["embeddings"] = emb
    return result
