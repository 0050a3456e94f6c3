import torch

from pipeline.config import section
from train.model import ModelConfig
from train.model.patches import SeparablePosEmbed, patchify
from train.model.video_encoder import VideoEncoder


def test_patchify_layout_time_major():
    video = torch.arange(2 * 4 * 3 * 8 * 8, dtype=torch.float).reshape(2, 4, 3, 8, 8)
    p = patchify(video, 4)
    assert p.shape == (2, 4 * 2 * 2, 4 * 4 * 3)
    # token t*4 + r*2 + c holds frame t rows 4r.. cols 4c.., channel-last inside the patch
    t, r, c = 2, 1, 0
    expected = video[1, t, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].permute(1, 2, 0).reshape(-1)
    assert torch.equal(p[1, t * 4 + r * 2 + c], expected)
    assert patchify(video, 4, tubelet=2).shape == (2, 2 * 4, 2 * 4 * 4 * 3)


def test_position_embedding_native_size_is_separable_sum():
    pos = SeparablePosEmbed(grid=3, frames=4, dim=5)
    out = pos(4, 3, 3)
    assert out.shape == (1, 36, 5)
    assert torch.allclose(out[0, 2 * 9 + 4], pos.temporal[0, 2] + pos.spatial[0, 4])


def test_position_embedding_interpolates_frames_and_resolution():
    pos = SeparablePosEmbed(grid=6, frames=8, dim=4)
    out = pos(12, 7, 7)
    assert out.shape == (1, 12 * 49, 4)
    # linear in time with aligned corners: first and last frames are preserved
    assert torch.allclose(out.reshape(12, 49, 4)[0] - out.reshape(12, 49, 4)[-1],
                          (pos.temporal[0, 0] - pos.temporal[0, -1]).expand(49, 4), atol=1e-6)


def test_model_built_for_8_frames_96px_runs_on_12_frames_112px():
    cfg = section({"model": {"video": {"image_size": 96, "patch_size": 16, "num_frames": 8,
                                       "width": 32, "depth": 2, "heads": 2},
                             "sparsify": {"layers": [0]}}}, ModelConfig, "model")
    enc = VideoEncoder(cfg.video, cfg.sparsify).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 12, 3, 112, 112), mask_ratio=0.75)
    assert out.grid == (12, 7, 7)
    assert out.num_patches == 12 * 49
    visible = int(12 * 49 * 0.25)
    assert out.visible_ids.shape == (2, visible)
    assert out.tokens.isfinite().all()
    single = enc(torch.randn(1, 1, 3, 64, 64), sparsify=False)   # one frame (Singularity)
    assert single.tokens.shape == (1, 1 + 16, 32)


def test_tubelet_two_halves_the_tokens():
    cfg = section({"model": {"video": {"image_size": 32, "patch_size": 8, "num_frames": 4,
                                       "tubelet": 2, "width": 16, "depth": 1, "heads": 2},
                             "sparsify": {"enabled": False}}}, ModelConfig, "model")
    out = VideoEncoder(cfg.video, cfg.sparsify)(torch.randn(1, 4, 3, 32, 32))
    assert out.tokens.shape == (1, 1 + 2 * 16, 16)
