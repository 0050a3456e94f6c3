import math

import torch

from train.model.layers import Attention, cls_attention_row
from train.model.sparsify import FUSED, frame_scores, spatial_sparsify, temporal_sparsify
from train.model.video_encoder import VideoEncoder



def test_cls_attention_row_equals_direct_softmax():
    torch.manual_seed(0)
    attn = Attention(16, heads=4)
    x = torch.randn(3, 11, 16)
    _, cls_attn = attn(x, return_cls_attention=True)
    # direct: full attention matrix from the same projections, CLS row, mean over heads
    q, k, _ = attn.qkv(x).chunk(3, dim=-1)
    q = q.view(3, 11, 4, 4).transpose(1, 2)
    k = k.view(3, 11, 4, 4).transpose(1, 2)
    full = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)   # [B, H, N, N]
    expected = full[:, :, 0, 1:].mean(dim=1)
    assert torch.allclose(cls_attn, expected, atol=1e-6)
    assert torch.allclose(cls_attention_row(q, k), expected, atol=1e-6)


def test_spatial_sparsify_keeps_top_tokens_and_fuses_the_rest():
    torch.manual_seed(1)
    b, n, d = 2, 10, 6
    x = torch.randn(b, 1 + n, d)
    scores = torch.rand(b, n)
    ids = torch.arange(n).expand(b, n) + 100
    out, out_scores, out_ids, keep_idx = spatial_sparsify(x, scores, ids, keep=0.3)
    k = 3
    assert out.shape == (b, 1 + k + 1, d)
    assert torch.equal(out[:, 0], x[:, 0])                       # CLS untouched
    for i in range(b):
        top = scores[i].topk(k).indices
        assert set(keep_idx[i].tolist()) == set(top.tolist())
        assert torch.equal(out[i, 1 : 1 + k], x[i, 1 + keep_idx[i]])
        dropped = [j for j in range(n) if j not in top.tolist()]
        w = scores[i, dropped]
        fused = (w[:, None] * x[i, 1 + torch.tensor(dropped)]).sum(0) / w.sum()
        assert torch.allclose(out[i, -1], fused, atol=1e-6)
        assert out_ids[i, -1] == FUSED
        assert set(out_ids[i, :k].tolist()) == {100 + j for j in top.tolist()}
        assert torch.isclose(out_scores[i, -1], w.sum())


def test_spatial_sparsify_keep_all_is_identity():
    x, s, ids = torch.randn(1, 5, 3), torch.rand(1, 4), torch.arange(4)[None]
    out, _, out_ids, _ = spatial_sparsify(x, s, ids, keep=1.0)
    assert torch.equal(out, x) and torch.equal(out_ids, ids)


def test_frame_scores_mean_per_frame():
    scores = torch.tensor([[0.1, 0.3, 0.5, 0.2]])
    frame = torch.tensor([[0, 0, 2, -1]])
    fs = frame_scores(scores, frame, 3)
    assert torch.allclose(fs[0, :1], torch.tensor([0.2])) and fs[0, 2] == 0.5
    assert fs[0, 1] == float("-inf")


def test_temporal_sparsify_keeps_top_frames_whole():
    # 4 frames x 3 tokens each; frame means: f0 .1, f1 .5, f2 .3, f3 .05 -> keep f1, f2
    per = 3
    frame_mean = torch.tensor([0.1, 0.5, 0.3, 0.05])
    scores = frame_mean.repeat_interleave(per)[None] + torch.tensor([0.0, 0.01, -0.01] * 4)[None]
    ids = torch.arange(12)[None]
    x = torch.randn(1, 13, 4)
    out, out_scores, out_ids, kept = temporal_sparsify(x, scores, ids, 0.5, tokens_per_frame=per,
                                                       frames=4)
    assert sorted(out_ids[0].tolist()) == [3, 4, 5, 6, 7, 8]
    assert out.shape == (1, 7, 4)
    assert torch.equal(out[0, 1:], x[0, 1 + kept[0]])
    assert torch.equal(out_scores, scores.gather(1, kept))


def test_temporal_sparsify_uneven_frames_fixed_budget_and_fused_kept():
    # masked clip: frames hold different numbers of visible tokens (tokens_per_frame = 4)
    ids = torch.tensor([[0, 1, 2, 4, 8, 9, 10, 11, FUSED], [0, 4, 5, 6, 7, 12, 13, 14, FUSED]])
    scores = torch.tensor([[0.2, 0.2, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.0],
                           [0.1, 0.4, 0.3, 0.3, 0.3, 0.5, 0.6, 0.55, 0.0]])
    x = torch.randn(2, 10, 4)
    _, _, out_ids, _ = temporal_sparsify(x, scores, ids, 0.5, tokens_per_frame=4, frames=4,
                                         n_fused=1)
    assert out_ids.shape == (2, 1 + 4)          # fused + ceil(0.5 * 8) for every sample
    assert (out_ids == FUSED).sum(1).tolist() == [1, 1]
    # sample 0: frame means f1 .9 > f0 .2 > f2 .1: f1's token, then all of f0 (3 tokens)
    assert sorted(i for i in out_ids[0].tolist() if i >= 0) == [0, 1, 2, 4]
    # sample 1: f3 (.55) then f1 (.325, best tokens first) fill the budget of 4
    assert sorted(i for i in out_ids[1].tolist() if i >= 0) == [4, 12, 13, 14]


def test_encoder_records_masked_kept_and_dropped_tokens(config):
    cfg = config(sparsify={"layers": [0, 1], "spatial_keep": 0.5, "temporal_keep": 0.5})
    enc_model = VideoEncoder(cfg.video, cfg.sparsify)
    video = torch.randn(2, 4, 3, 32, 32)
    enc = enc_model(video, mask_ratio=0.5, generator=torch.Generator().manual_seed(0), trace=True)
    n = 4 * 16
    assert enc.visible_ids.shape == (2, n // 2)
    # layer 0: 32 -> temporal 16 -> spatial 8 + 1 fused; layer 1: 9 -> 5 (fused kept) -> 3 + 1
    assert enc.tokens.shape == (2, 1 + 4, 32)
    assert len(enc.trace) == 2 and [s["layer"] for s in enc.trace] == [0, 1]
    for i in range(2):
        visible = set(enc.visible_ids[i].tolist())
        masked = set(torch.nonzero(enc.mask[i]).flatten().tolist())
        assert visible.isdisjoint(masked) and len(visible | masked) == n
        final = {j for j in enc.ids[i].tolist() if j >= 0}
        dropped = set()
        for step in enc.trace:
            t = set(step["temporal_dropped"][i].tolist())
            s = set(step["spatial_fused"][i].tolist())
            assert t.isdisjoint(s) and t <= visible and s <= visible
            dropped |= t | s
        assert final <= visible and final.isdisjoint(dropped)
        assert final | dropped == visible


def test_sparsify_off_keeps_all_visible_tokens(config):
    cfg = config(sparsify={"enabled": False})
    enc = VideoEncoder(cfg.video, cfg.sparsify)(torch.randn(1, 4, 3, 32, 32), mask_ratio=0.75)
    assert enc.tokens.shape[1] == 1 + 16 and enc.trace == []


def test_keep_schedule_warms_up_in_few_stages():
    from train.model.sparsify import WARMUP_STAGES, keep_schedule

    rates = [keep_schedule(0.5, step, 40) for step in range(50)]
    assert rates[0] == 1.0 and rates[40:] == [0.5] * 10
    assert rates == sorted(rates, reverse=True)               # only ever falls
    assert len(set(rates)) == WARMUP_STAGES + 1               # few shapes (torch.compile)
    assert 0.5 < rates[20] < 1.0
    assert keep_schedule(0.3, 0, 0) == 0.3                    # 0 = no warm-up


def test_encoder_warm_up_only_while_training(config):
    cfg = config(sparsify={"layers": [1], "warmup_steps": 8})
    torch.manual_seed(0)
    enc_model = VideoEncoder(cfg.video, cfg.sparsify)
    video = torch.randn(2, 4, 3, 32, 32)

    def final_tokens():
        return enc_model(video, mask_ratio=0.5, generator=torch.Generator().manual_seed(0)).tokens.shape[1]

    full = final_tokens()                   # never told a step: the configured rates
    assert full == 1 + 8 + 1                # 32 visible -> 16 -> 8 + 1 fused
    enc_model.set_step(0)
    assert final_tokens() == 1 + 32         # step 0 of the warm-up: nothing dropped
    enc_model.eval()
    assert final_tokens() == full           # evaluation: always the final rates
    enc_model.train()
    enc_model.set_step(8)
    assert final_tokens() == full


def test_trace_is_recorded_only_when_asked(config):
    cfg = config(sparsify={"layers": [0, 1]})
    enc = VideoEncoder(cfg.video, cfg.sparsify)(torch.randn(1, 4, 3, 32, 32), mask_ratio=0.5)
    assert enc.trace == [] and enc.n_fused == 2
