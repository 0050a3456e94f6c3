"""Retrieval ranking on similarity matrices with a known answer; VTM re-ranking."""

import pytest
import torch

from eval.metrics import ranks_from_scores
from eval.retrieval import rank_retrieval, rerank_top_k


def test_perfect_and_reversed_similarity():
    n = 12
    ident = torch.eye(n) + 0.01 * torch.arange(n)[None, :]  # diagonal is each row's maximum
    m = rank_retrieval(ident, list(range(n)))
    assert m["t2v"]["R@1"] == 100.0 and m["v2t"]["R@1"] == 100.0 and m["t2v"]["MdR"] == 1.0
    # the right video is always the worst: rank n for every query
    worst = -ident
    m = rank_retrieval(worst, list(range(n)))
    assert m["t2v"]["R@10"] == 0.0 and m["t2v"]["MdR"] == float(n) and m["v2t"]["MnR"] == float(n)


def test_multi_caption_known_answer():
    # 3 videos with 2 captions each; caption 2v is exact, caption 2v+1 points at the next video
    groups = [0, 0, 1, 1, 2, 2]
    sim = torch.zeros(6, 3)
    for t, v in enumerate(groups):
        if t % 2 == 0:
            sim[t, v] = 1.0
        else:
            sim[t, (v + 1) % 3] = 1.0
            sim[t, v] = 0.5
    m = rank_retrieval(sim, groups)
    assert m["t2v"]["R@1"] == pytest.approx(50.0)  # the exact captions only
    assert m["t2v"]["MnR"] == pytest.approx(1.5)
    # every video finds its exact caption first: but the shifted caption of the previous video
    # also scores 1.0 on it, a tie that counts against the video -> rank 2
    assert m["v2t"]["R@1"] == 0.0
    assert m["v2t"]["MdR"] == 2.0


def test_rerank_reorders_only_the_top_k():
    torch.manual_seed(0)
    sim = torch.rand(5, 10)
    k = 3
    calls = []

    def vtm(text_idx, video_idx):
        calls.append((text_idx.clone(), video_idx.clone()))
        return -video_idx.double()  # prefers low video ids, whatever VTC said

    out = rerank_top_k(sim, k, vtm)
    top = sim.topk(k, dim=1).indices
    for q in range(5):
        new_order = out[q].argsort(descending=True).tolist()
        # the first k are the same set as VTC's top k, ordered by the VTM score
        assert set(new_order[:k]) == set(top[q].tolist())
        assert new_order[:k] == sorted(top[q].tolist())
        # the rest keep their VTC order
        rest = [v for v in sim[q].argsort(descending=True).tolist() if v not in set(top[q].tolist())]
        assert new_order[k:] == rest
    # VTM was asked about exactly the top-k pairs, nothing else
    asked = torch.cat([c[1] for c in calls]).view(5, k)
    assert torch.equal(asked.sort(dim=1).values, top.sort(dim=1).values)


def test_rerank_can_fix_a_near_miss_but_not_a_far_miss():
    # right video for query 0 is 2nd by VTC (inside k=2) and 5th for query 1 (outside k=2)
    sim = torch.tensor([[0.9, 0.8, 0.1, 0.0, 0.2],
                        [0.9, 0.1, 0.8, 0.7, 0.6]])
    correct = torch.tensor([[False, True, False, False, False],
                            [False, True, False, False, False]])

    def oracle(text_idx, video_idx):  # VTM knows the truth
        return (video_idx == 1).double()

    before = ranks_from_scores(sim, correct).tolist()
    after = ranks_from_scores(rerank_top_k(sim, 2, oracle), correct).tolist()
    assert before == [2, 5]
    assert after == [1, 5]


def test_rerank_adding_vtc_keeps_the_vtc_order_when_vtm_is_constant():
    # an untrained VTM head gives every pair the same logit: alone it ties the whole top k
    # (ranks are pessimistic, so the right video falls to k), with the VTC similarity added
    # the VTC order survives
    torch.manual_seed(1)
    sim = torch.rand(6, 8)

    def constant(text_idx, video_idx):
        return torch.full((len(text_idx),), 0.3, dtype=torch.float64)

    with_sim = rerank_top_k(sim, 4, constant, add_sim=True)
    assert torch.equal(with_sim.argsort(dim=1, descending=True), sim.argsort(dim=1, descending=True))
    alone = rerank_top_k(sim, 4, constant)
    top = sim.topk(4, dim=1).indices
    assert (alone.gather(1, top) == alone.gather(1, top[:, :1])).all()


def test_rerank_adding_vtc_still_lets_a_confident_vtm_decide():
    sim = torch.tensor([[0.9, 0.8, 0.1]])
    correct = torch.tensor([[False, True, False]])

    def oracle(text_idx, video_idx):  # a trained head: logits several units apart
        return torch.where(video_idx == 1, 4.0, -4.0).double()

    assert ranks_from_scores(rerank_top_k(sim, 2, oracle, add_sim=True), correct).tolist() == [1]


def test_v2t_rerank_passes_text_and_video_the_right_way_round():
    sim = torch.tensor([[0.2, 0.9], [0.8, 0.1], [0.5, 0.4]])  # 3 texts x 2 videos
    seen = []

    def vtm(text_idx, video_idx):
        seen.append((text_idx.tolist(), video_idx.tolist()))
        return torch.zeros(len(text_idx), dtype=torch.float64)

    rank_retrieval(sim, [1, 0, 0], k=1, score_pairs=vtm)
    t2v_call, v2t_call = seen
    assert t2v_call == ([0, 1, 2], [1, 0, 0])  # text queries, their top video
    assert v2t_call == ([1, 0], [0, 1])         # video queries: top text of each video


def test_rerank_of_tied_candidates_counts_ties_against_the_answer_as_vtc_does():
    """A scorer that says nothing (constant VTC and VTM) ranks every video alike: R@K is 0
    re-ranked as it is by VTC. Candidates tied at the k-th score all enter the re-ranked block,
    so torch.topk's pick by index cannot let a tied right answer in."""
    n = 20
    sim = torch.zeros(n, n)

    def constant(text_idx, video_idx):
        return torch.zeros(len(text_idx), dtype=torch.float64)

    vtc = rank_retrieval(sim, list(range(n)))
    for add_sim in (False, True):
        vtm = rank_retrieval(sim, list(range(n)), k=4, score_pairs=constant, add_sim=add_sim)
        for side in ("t2v", "v2t"):
            assert vtm[side] == vtc[side]
            assert vtm[side]["R@5"] == 0.0 and vtm[side]["MdR"] == float(n)
    # a tie at the k-th score with the answer outside the top k: both enter and VTM decides
    sim = torch.tensor([[0.9, 0.5, 0.5, 0.1]])  # k=2: videos 1 and 2 tie for 2nd place
    correct = torch.tensor([[False, False, True, False]])

    def oracle(text_idx, video_idx):
        return (video_idx == 2).double()

    assert ranks_from_scores(rerank_top_k(sim, 2, oracle), correct).tolist() == [1]
