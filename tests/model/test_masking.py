import pytest
import torch

from train.model.masking import kept_ids, mask_tokens, random_masking, tube_masking


def _unshuffle(kept, ids_restore, n):
    # MAE decoder input: kept tokens + zeros for masked ones, back in patch order
    b, k, f = kept.shape
    full = torch.cat([kept, kept.new_zeros(b, n - k, f)], dim=1)
    return full.gather(1, ids_restore[..., None].expand(-1, -1, f))


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_random_masking_keeps_exact_count_and_restores(ratio):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 40, 3, generator=g)
    kept, mask, ids_restore = random_masking(x, ratio, g)
    k = int(40 * (1 - ratio))
    assert kept.shape == (5, k, 3)
    assert mask.shape == (5, 40) and (mask.sum(1) == 40 - k).all()
    restored = _unshuffle(kept, ids_restore, 40)
    visible = mask == 0
    assert torch.equal(restored[visible], x[visible])
    assert (restored[~visible] == 0).all()
    ids = kept_ids(ids_restore, kept.shape[1])
    assert torch.equal(kept, x.gather(1, ids[..., None].expand(-1, -1, 3)))
    assert (mask.gather(1, ids) == 0).all()


def test_random_masking_differs_per_sample():
    x = torch.randn(8, 64, 2)
    _, mask, _ = random_masking(x, 0.75, torch.Generator().manual_seed(0))
    assert len({tuple(m.tolist()) for m in mask}) > 1


def test_tube_masking_shares_one_spatial_mask_over_frames():
    g = torch.Generator().manual_seed(2)
    frames, s = 4, 16
    x = torch.randn(3, frames * s, 5, generator=g)
    kept, mask, ids_restore = tube_masking(x, 0.75, frames, g)
    keep_s = int(s * 0.25)
    assert kept.shape == (3, frames * keep_s, 5)
    per_frame = mask.reshape(3, frames, s)
    assert (per_frame == per_frame[:, :1]).all()           # same spatial mask in every frame
    assert (per_frame.sum(-1) == s - keep_s).all()
    assert not torch.equal(per_frame[0, 0], per_frame[1, 0])  # but per sample
    restored = _unshuffle(kept, ids_restore, frames * s)
    assert torch.equal(restored[mask == 0], x[mask == 0])


def test_tube_masking_rejects_bad_frame_count():
    with pytest.raises(ValueError, match="frames"):
        tube_masking(torch.randn(1, 10, 2), 0.5, 3)


def test_mask_tokens_bert_statistics_and_specials():
    g = torch.Generator().manual_seed(3)
    b, length = 400, 40
    ids = torch.randint(1000, 30000, (b, length), generator=g)
    am = torch.ones_like(ids)
    ids[:, 0], ids[:, 30] = 101, 102
    ids[:, 31:], am[:, 31:] = 0, 0
    corrupted, labels = mask_tokens(ids, am, 0.15, mask_id=103, vocab_size=30522,
                                    special_ids=(101, 102, 0), generator=g)
    selected = labels != -100
    # specials and padding never selected nor changed
    assert not selected[:, 0].any() and not selected[:, 30:].any()
    assert torch.equal(corrupted[:, 0], ids[:, 0]) and torch.equal(corrupted[:, 30:], ids[:, 30:])
    assert torch.equal(corrupted[~selected], ids[~selected])
    assert torch.equal(labels[selected], ids[selected])
    rate = selected[:, 1:30].float().mean().item()
    assert abs(rate - 0.15) < 0.01
    n = selected.sum().item()
    to_mask = (corrupted[selected] == 103).sum().item() / n
    unchanged = (corrupted[selected] == ids[selected]).sum().item() / n
    replaced = 1 - to_mask - unchanged
    assert abs(to_mask - 0.8) < 0.03
    assert abs(unchanged - 0.1) < 0.025   # (random may rarely hit the same word)
    assert abs(replaced - 0.1) < 0.025


def test_mask_tokens_high_ratio():
    ids = torch.randint(1000, 2000, (50, 20))
    corrupted, labels = mask_tokens(ids, torch.ones_like(ids), 0.75, mask_id=103,
                                    vocab_size=30522, special_ids=(101, 102, 0))
    assert abs((labels != -100).float().mean().item() - 0.75) < 0.05
