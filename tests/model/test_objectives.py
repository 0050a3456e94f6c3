import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train.model.objectives import (
    MLMHead, hog_target, mlm_loss, mvm_loss, pixel_target, sample_negatives, vtc_loss,
)
from train.model.objectives.vtc import VTC, gather_with_grad


def test_vtc_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    t = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    temp = torch.tensor(0.1)
    loss = vtc_loss(v, t, temp)
    total = 0.0
    for i in range(5):  # -log softmax of the matching pair, both directions, by hand
        sv = [float(v[i] @ t[j]) / 0.1 for j in range(5)]
        st = [float(t[i] @ v[j]) / 0.1 for j in range(5)]
        total += -(sv[i] - math.log(sum(math.exp(s) for s in sv)))
        total += -(st[i] - math.log(sum(math.exp(s) for s in st)))
    assert math.isclose(float(loss), total / 10, rel_tol=1e-5)


def test_vtc_temperature_is_learnable_and_clamped():
    vtc = VTC(0.07)
    assert math.isclose(float(vtc.temperature.detach()), 0.07, rel_tol=1e-6)
    with torch.no_grad():
        vtc.log_temperature.fill_(math.log(1e-5))
    assert math.isclose(float(vtc.temperature.detach()), 0.001, rel_tol=1e-6)
    v = F.normalize(torch.randn(3, 4), dim=-1)
    vtc.log_temperature.data.fill_(math.log(0.1))
    vtc(v, v.flip(0)).backward()
    assert vtc.log_temperature.grad is not None


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 4, requires_grad=True)
    out, offset = gather_with_grad(x)
    assert out is x and offset == 0


def test_hard_negatives_never_pick_positives():
    g = torch.Generator().manual_seed(0)
    b = 6
    sim = torch.randn(b, b, generator=g) * 5
    sim.fill_diagonal_(100.0)                          # positives are the most similar
    positive = torch.eye(b, dtype=torch.bool)
    positive[0, 3] = positive[3, 0] = True             # clips 0 and 3 share a key
    for _ in range(200):
        idx, valid = sample_negatives(sim, positive, hard=True, generator=g)
        assert valid.all()
        assert not positive[torch.arange(b), idx].any()
    uniform, _ = sample_negatives(sim, positive, hard=False, generator=g)
    assert not positive[torch.arange(b), uniform].any()


def test_hard_negatives_follow_similarity():
    g = torch.Generator().manual_seed(1)
    sim = torch.zeros(1, 4)
    sim[0, 2] = 3.0                                    # hardest negative
    positive = torch.tensor([[True, False, False, False]])
    picks = torch.stack([sample_negatives(sim, positive, generator=g)[0] for _ in range(2000)])
    frac = (picks == 2).float().mean().item()
    expected = math.exp(3) / (math.exp(3) + 2)
    assert abs(frac - expected) < 0.04


def test_row_without_negatives_is_marked_invalid():
    idx, valid = sample_negatives(torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool))
    assert not valid.any() and idx.shape == (2,)


def test_mlm_loss_only_on_masked_positions():
    emb = nn.Embedding(50, 8)
    head = MLMHead(8, emb)
    fused = torch.randn(2, 5, 8, requires_grad=True)
    labels = torch.full((2, 5), -100)
    labels[0, 2], labels[1, 4] = 7, 11
    loss = mlm_loss(head, fused, labels)
    logits = head(fused[[0, 1], [2, 4]])
    assert torch.isclose(loss, F.cross_entropy(logits, torch.tensor([7, 11])))
    loss.backward()
    assert fused.grad[0, 0].abs().sum() == 0 and fused.grad[0, 2].abs().sum() > 0
    assert emb.weight.grad is not None                  # decoder tied to the word embeddings


def test_mlm_head_loads_bert_head_from_checkpoint(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16)
    torch.manual_seed(0)
    bert = BertForMaskedLM(cfg)
    with torch.no_grad():
        bert.cls.predictions.bias.normal_()
    bert.save_pretrained(tmp_path)
    head = MLMHead(8, nn.Embedding(40, 8))
    assert head.load_from_checkpoint(tmp_path)
    assert torch.equal(head.dense.weight, bert.cls.predictions.transform.dense.weight)
    assert torch.equal(head.bias, bert.cls.predictions.bias)


def test_mvm_loss_ignores_visible_patches():
    pred, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]], dtype=torch.float)
    loss = mvm_loss(pred, target, mask)
    other = pred.clone()
    other[mask == 0] += 100.0
    assert torch.isclose(loss, mvm_loss(other, target, mask))
    expected = ((pred - target) ** 2).mean(-1)[mask.bool()].mean()
    assert torch.isclose(loss, expected)


def test_pixel_target_is_normalised_per_patch():
    t = pixel_target(torch.randn(2, 2, 3, 16, 16) * 5 + 3, 8, 1, norm_pix=True)
    assert t.shape == (2, 8, 192)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 8), atol=1e-5)
    raw = pixel_target(torch.ones(1, 1, 3, 8, 8), 8, 1, norm_pix=False)
    assert torch.equal(raw, torch.ones(1, 1, 192))


def test_hog_target_orientation_of_an_edge():
    video = torch.zeros(1, 1, 3, 16, 16)
    video[..., :, 8:] = 1.0            # vertical edge: horizontal gradient, orientation 0
    hog = hog_target(video, 16, 1)     # one patch, 2x2 cells of 8 px, 3 channels x 9 bins
    assert hog.shape == (1, 1, 3 * 9 * 4)
    per = hog.reshape(3, 9, 2, 2)
    assert per[:, 0].sum() > 0.99 * per.sum()          # all mass in bin 0
    assert torch.isclose(hog.norm(), torch.tensor(1.0))


def _two_rank_worker(rank, world, port, video, text, bounds, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        lo, hi = bounds[rank]
        v = video[lo:hi].clone().requires_grad_(True)
        t = text[lo:hi].clone().requires_grad_(True)
        loss = vtc_loss(v, t, torch.tensor(0.1))
        loss.backward()
        queue.put((rank, loss.item(), v.grad.tolist(), t.grad.tolist()))  # plain data: no shared memory
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("bounds", [((0, 3), (3, 6)), ((0, 4), (4, 6))], ids=["even", "uneven"])
def test_vtc_across_two_ranks_equals_global_batch(bounds):
    # "uneven": a rank's last, short batch meets a full one in the cross-rank gather.
    import socket

    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(4)
    video = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    v, t = video.clone().requires_grad_(True), text.clone().requires_grad_(True)
    full = vtc_loss(v, t, torch.tensor(0.1))
    full.backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_two_rank_worker, args=(r, 2, port, video, text, bounds, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank, loss, vgrad, tgrad in results:
        lo, hi = bounds[rank]
        assert math.isclose(loss, float(full), rel_tol=1e-5)
        # x world size: DDP averages the ranks' gradients, which must give the global gradient
        assert torch.allclose(torch.tensor(vgrad), 2 * v.grad[lo:hi], atol=1e-6)
        assert torch.allclose(torch.tensor(tgrad), 2 * t.grad[lo:hi], atol=1e-6)
