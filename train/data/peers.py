"""Per-clip decoders compared by the loader bench: ours, the naive baseline and peer libraries.

Every decoder gets the same encoded clip and the same sampled indices and returns RGB frames
(one thread each, as in one loader worker). The peers (torchcodec, decord) are optional: the
bench uses them with ``--peers`` when they import, and says why when they do not; nothing here
installs them.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np

from train.data.decode import decode_all_frames, decode_sampled_planar
from train.data.samples import PlannedSample

Decoder = Callable[[PlannedSample], np.ndarray]


def ours_full(plan: PlannedSample) -> np.ndarray:
    """The sampled frames, whole (the same output the peers give)."""
    return decode_sampled_planar(plan.video, plan.indices, keyint=plan.meta["video"].get("keyint"))


def ours_crop(plan: PlannedSample) -> np.ndarray:
    """What the CPU loader decodes: the sampled frames, converted inside the clip's crop box only."""
    a = plan.augment
    return decode_sampled_planar(plan.video, plan.indices, keyint=plan.meta["video"].get("keyint"),
                                 box=(a.top, a.left, a.height, a.width))


def naive(plan: PlannedSample) -> np.ndarray:
    """Decode and convert every frame, then keep the sampled ones (the baseline)."""
    return decode_all_frames(plan.video)[plan.indices]


def torchcodec_decoder(seek_mode: str) -> Decoder:
    from torchcodec.decoders import VideoDecoder

    def decode(plan: PlannedSample) -> np.ndarray:
        decoder = VideoDecoder(plan.video, seek_mode=seek_mode, num_ffmpeg_threads=1, device="cpu")
        return decoder.get_frames_at(plan.indices.tolist()).data.numpy()  # [T, 3, H, W] uint8

    return decode


def decord_decoder() -> Decoder:
    import decord

    def decode(plan: PlannedSample) -> np.ndarray:
        reader = decord.VideoReader(io.BytesIO(plan.video), num_threads=1)
        return reader.get_batch(plan.indices.tolist()).asnumpy()  # [T, H, W, 3] uint8

    return decode


def peer_decoders() -> tuple[dict[str, Decoder], dict[str, str]]:
    """(name -> decoder) for the peers that import here, and (name -> reason) for those that do not."""
    found, missing = {}, {}
    for name, make in (("torchcodec_exact", lambda: torchcodec_decoder("exact")),
                       ("torchcodec_approximate", lambda: torchcodec_decoder("approximate")),
                       ("decord", decord_decoder)):
        try:
            found[name] = make()
        except Exception as err:  # ImportError, or a build whose native libraries do not load
            missing[name] = f"{type(err).__name__}: {err}"[:300]
    return found, missing


def as_thwc(frames: np.ndarray) -> np.ndarray:
    """[T, 3, H, W] or [T, H, W, 3] -> [T, H, W, 3] (for pixel comparisons between decoders)."""
    return frames.transpose(0, 2, 3, 1) if frames.shape[1] == 3 and frames.shape[-1] != 3 else frames
