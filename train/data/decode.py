"""Decoding only the sampled frames of an encoded clip with PyAV (the CPU backend).

Shards hold constant-frame-rate, closed-GOP, B-frame-free H.264 with a fixed keyframe
interval, so frame ``i`` sits at pts ``i / fps`` and its keyframe is frame
``i - i % keyint``: for each wanted frame, seek to its keyframe unless the decoder is already
inside that GOP, decode forward, keep only the frames we need (what torchcodec does, too).
Frames stay YUV until the end; :mod:`train.data.colour` converts only the crop box.
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Sequence

import av
import numpy as np

from train.data.colour import frames_to_rgb_planar, yuv420p_to_rgb_planar

Box = tuple[int, int, int, int]  # top, left, height, width


SEEK_GAP_FRAMES = 32  # seek instead of demuxing through when the next wanted frame is further ahead (keyint unknown)


class CorruptVideo(ValueError):
    """The bytes do not decode to the frames the metadata promises."""


def frame_planes(frame) -> object:
    """What we keep of a decoded frame until conversion: the frame itself when it is limited-range
    YUV 4:2:0 (converted as the GPU path does), else PyAV's ``rgb24`` of it."""
    if frame.format.name == "yuv420p" and frame.color_range != 2 and frame.width % 2 == 0 and frame.height % 2 == 0:
        return frame
    return ("rgb", frame.to_ndarray(format="rgb24"))


def _size(kept) -> tuple[int, int]:
    """(height, width) of a kept frame."""
    if isinstance(kept, tuple):
        return kept[1].shape[:2]
    if isinstance(kept, np.ndarray):
        return kept.shape[0] * 2 // 3, kept.shape[1]
    return kept.height, kept.width


def planes_to_rgb_planar(kept: list, box: Box | None = None) -> np.ndarray:
    """Frames kept by :func:`frame_planes` (one clip) -> RGB uint8 ``[T, 3, h, w]`` of ``box``.

    Full-range or non-4:2:0 frames fall back to PyAV's ``rgb24`` (libswscale), then the crop.
    """
    if all(isinstance(k, av.VideoFrame) for k in kept):
        return frames_to_rgb_planar(kept, box)
    if all(isinstance(k, np.ndarray) for k in kept):
        return yuv420p_to_rgb_planar(np.stack(kept), box)
    out = []
    for k in kept:
        if isinstance(k, tuple):
            rgb = k[1].transpose(2, 0, 1)
            if box is not None:
                top, left, height, width = box
                rgb = rgb[:, top : top + height, left : left + width]
            out.append(rgb)
        elif isinstance(k, av.VideoFrame):
            out.append(frames_to_rgb_planar([k], box)[0])
        else:
            out.append(yuv420p_to_rgb_planar(k[None], box)[0])
    return np.ascontiguousarray(np.stack(out))


def planes_to_rgb(kept: list) -> np.ndarray:
    """Convert frames kept by :func:`frame_planes` (all of one clip) to RGB ``[T, H, W, 3]``."""
    return np.ascontiguousarray(planes_to_rgb_planar(kept).transpose(0, 2, 3, 1))


def _frame_index(pts: int, start: int, to_index: float) -> int:
    return int(round((pts - start) * to_index))


def _container_format(data: bytes) -> str | None:
    """'mp4' for ISO-BMFF bytes (what the shards hold), which spares libavformat's format probe."""
    return "mp4" if data[4:8] == b"ftyp" else None


def _decode_planes(data: bytes, wanted: list[int], keyint: int | None, threads: int) -> dict[int, object]:
    """Frame index -> kept planes, for the sorted unique indices ``wanted``.

    Demuxes packets lazily, in order (cheap: no decoding, and it stops after the last wanted
    frame), and decodes only runs of packets from the keyframe before a wanted frame up to it,
    continuing forward while the next wanted frame's keyframe is already behind the decoder.
    Skipping a packet by demuxing costs about a hundredth of a millisecond and a container seek
    about thirty times that (PyAV re-reads the file through Python I/O), so short gaps are
    demuxed through and a wanted frame more than two keyframe intervals (:data:`SEEK_GAP_FRAMES`
    when ``keyint`` is unknown) past the last demuxed packet is reached by seeking: its keyframe
    is then surely past the decoder, so the seek throws no decoded work away (MP4 only: its index
    puts the seek on the keyframe at or before the frame). On 30 s windows that saves most of the
    demux time. Which packets are keyframes comes from their own flags. Streams whose decode
    order is not frame order (B-frames; the shards have none) are decoded from the start.
    """
    wanted_set = set(wanted)
    got: dict[int, object] = {}
    try:
        with av.open(io.BytesIO(data), mode="r", format=_container_format(data)) as container:
            stream = container.streams.video[0]
            codec = stream.codec_context
            codec.thread_count = threads
            fps = float(stream.average_rate or stream.guessed_rate)
            start = stream.start_time or 0
            to_index = float(stream.time_base) * fps  # pts ticks -> frame index (a float, not a Fraction)
            demuxer = (p for p in container.demux(stream) if p.size > 0 and p.pts is not None)
            packets: list = []  # demuxed so far (since the last seek), in decode order
            keys: list[int] = []  # positions of keyframes in ``packets``
            in_order, previous = True, None  # previous: frame index of the last demuxed packet
            position, started = 0, False  # next packet the decoder would take
            seekable = _container_format(data) == "mp4"  # the index makes seeks cheap and exact
            seek_gap = 2 * keyint if keyint else SEEK_GAP_FRAMES
            for target in wanted:
                if target in got:
                    continue
                if seekable and in_order and target - (-1 if previous is None else previous) > seek_gap:
                    demuxer = _seek_to_keyframe_before(container, stream, start + int(round(target / to_index)))
                    packets, keys, previous, position = [], [], None, 0
                    if started:
                        codec.flush_buffers()
                        started = False
                # demux up to the target's packet
                while previous is None or (previous < target and in_order):
                    packet = next(demuxer, None)
                    if packet is None:
                        break
                    index = _frame_index(packet.pts, start, to_index)
                    in_order = in_order and (previous is None or index > previous)
                    previous = index
                    if packet.is_keyframe:
                        keys.append(len(packets))
                    packets.append(packet)
                if not in_order:  # B-frames: demux everything, decode from the start
                    packets.extend(demuxer)
                    keys = [0]
                last = len(packets) - 1 if not in_order or previous < target else _last_at_or_before(packets, target, start, to_index)
                key = keys[max(0, bisect.bisect_right(keys, last) - 1)] if keys else 0
                if key > position or not started:
                    if started:
                        codec.flush_buffers()
                    position, started = key, True
                while position <= last and target not in got:
                    for frame in codec.decode(packets[position]):
                        _keep(frame, start, to_index, wanted_set, got)
                    position += 1
                if target not in got:  # a decoder that delays output, or a missing frame: drain
                    for frame in codec.decode(None):
                        _keep(frame, start, to_index, wanted_set, got)
                    codec.flush_buffers()
                    started = False
    except (av.error.FFmpegError, OSError, EOFError, IndexError) as err:
        raise CorruptVideo(f"decode failed: {err}") from err
    missing = [i for i in wanted if i not in got]
    if missing:
        raise CorruptVideo(f"frames {missing[:5]} not found (clip shorter than its metadata says?)")
    return got


def _seek_to_keyframe_before(container, stream, pts: int):
    """A fresh packet iterator starting at the keyframe at or before ``pts`` (or, where the
    container cannot honour that, at the start of the stream: slower, never wrong)."""
    container.seek(pts, stream=stream, backward=True, any_frame=False)
    packets = (p for p in container.demux(stream) if p.size > 0 and p.pts is not None)
    first = next(packets, None)
    if first is not None and first.is_keyframe and first.pts <= pts:
        return itertools.chain([first], packets)
    container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
    return (p for p in container.demux(stream) if p.size > 0 and p.pts is not None)


def _last_at_or_before(packets: list, target: int, start: int, to_index: float) -> int:
    """Position of the last demuxed packet whose frame index is <= target (packets in frame order)."""
    n = len(packets) - 1
    while n > 0 and _frame_index(packets[n].pts, start, to_index) > target:
        n -= 1
    return n


def _keep(frame, start: int, to_index: float, wanted: set[int], got: dict) -> None:
    if frame.pts is None:
        return
    index = _frame_index(frame.pts, start, to_index)
    if index in wanted and index not in got:
        got[index] = frame_planes(frame)


def decode_sampled_planar(data: bytes, indices: Sequence[int], *, keyint: int | None = None,
                          box: Box | None = None, threads: int = 1) -> np.ndarray:
    """RGB uint8 ``[T, 3, h, w]``: the ``box`` crop of the frames at ``indices`` (any order, repeats allowed).

    Each distinct frame is converted once; ``threads`` is the decoder's (loader workers use 1).
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        raise ValueError("no frame indices given")
    got = _decode_planes(data, wanted, keyint, threads)
    if box is not None:
        height, width = _size(got[wanted[0]])
        if box[0] + box[2] > height or box[1] + box[3] > width:
            raise CorruptVideo(f"frames are {width}x{height}, metadata promised more (crop box {box})")
    rgb = planes_to_rgb_planar([got[i] for i in wanted], box)
    position = {i: n for n, i in enumerate(wanted)}
    order = [position[int(i)] for i in indices]
    return rgb if order == list(range(len(wanted))) else rgb[order]


def decode_sampled_frames(data: bytes, indices: Sequence[int], *, keyint: int | None = None) -> np.ndarray:
    """RGB uint8 ``[T, H, W, 3]`` of the frames at ``indices`` (any order, repeats allowed)."""
    planar = decode_sampled_planar(data, indices, keyint=keyint)
    return np.ascontiguousarray(planar.transpose(0, 2, 3, 1))


def decode_all_frames(data: bytes) -> np.ndarray:
    """Every frame as RGB uint8 ``[N, H, W, 3]``: the naive baseline and the test oracle."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            container.streams.video[0].codec_context.thread_count = 1
            kept = [frame_planes(f) for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError, EOFError) as err:
        raise CorruptVideo(f"decode failed: {err}") from err
    if not kept:
        raise CorruptVideo("no frames decoded")
    return planes_to_rgb(kept)


def check_stream(data: bytes, max_index: int, width: int, height: int) -> None:
    """Cheap pre-flight for the DALI path (demux only, no decode): the frames and size exist.

    DALI fails a whole batch on one bad video, so broken samples are caught here, one by one.
    """
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            if (stream.codec_context.width, stream.codec_context.height) != (width, height):
                raise CorruptVideo(
                    f"stream is {stream.codec_context.width}x{stream.codec_context.height}, metadata says {width}x{height}"
                )
            packets = sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.error.FFmpegError, OSError, EOFError, IndexError) as err:
        raise CorruptVideo(f"cannot demux: {err}") from err
    if packets <= max_index:
        raise CorruptVideo(f"only {packets} frames, frame {max_index} needed")
