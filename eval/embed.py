"""Features of videos and texts from a trained model, the way evaluation computes them.

Two kinds of video source, one transform:

* **raw video files** (a folder, any format ffmpeg reads): each file is probed and normalised
  exactly as ``python -m preprocess`` does (``preprocess.probe`` + ``preprocess.normalise``, with
  the checkpoint's own ``preprocess:`` settings), then decoded by the loader's CPU path with the
  evaluation plan (middle frame of each segment, the test view of ``eval.view``'s default, the
  centre square, unless ``view`` says otherwise; the checkpoint's size and normalisation). A
  clip's features therefore equal the ones evaluation computes from its shard.
  Videos longer than ``preprocess.max_window_s`` become several windows (``<key>_w000`` ...).
* **WebDataset shards**: through the evaluation loader itself (``build_loader(train=False)``).

A file that cannot be read is skipped and reported with its reason (:class:`Unreadable`); a
fault of the machine (full disk, ffmpeg killed) stops the run, as in preprocessing.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from preprocess.sources import VIDEO_SUFFIXES  # what a folder scan treats as a video


@dataclass
class Clip:
    """One clip ready for the model: normalised frames ``[T, 3, S, S]``."""

    key: str
    source: str
    video: torch.Tensor


@dataclass
class Unreadable:
    source: str
    reason: str


@dataclass
class Embedded:
    """What one pass over a video source gives (rows in source order)."""

    keys: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)        # [E] each, L2-normalised
    tokens: list[np.ndarray] = field(default_factory=list)       # [1+n, D] each (for VTM), if kept
    frames: list[list[bytes]] = field(default_factory=list)      # JPEG thumbnails per clip
    skipped: list[Unreadable] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        if not self.feats:
            return np.zeros((0, 0), np.float32)
        return np.stack(self.feats).astype(np.float32)


# --------------------------------------------------------------------------- settings


def checkpoint_state(model) -> dict:
    state = getattr(model, "checkpoint_state", None)
    if not isinstance(state, dict):
        raise ValueError("this model carries no checkpoint settings; load it with SMAUG.from_pretrained(DIR)")
    return state


def loader_settings(model, batch_size: int = 8, num_frames: int | None = None):
    """The loader settings the checkpoint was trained with (size, normalisation, frames, text length)."""
    from train.checkpoint import loader_config_of

    cfg = loader_config_of(checkpoint_state(model), {}, num_frames=num_frames, batch_size=batch_size)
    # evaluation decodes in this process: no worker processes for a handful of files
    return dataclasses.replace(cfg, num_workers=0, backend="cpu")


def preprocess_settings(model):
    """The checkpoint's ``preprocess:`` settings (how its shards were made), without the cache."""
    from pipeline.config import section
    from preprocess.config import PreprocessConfig

    params = checkpoint_state(model).get("params") or {}
    return dataclasses.replace(section(params, PreprocessConfig, "preprocess"), cache_dir=None)


# --------------------------------------------------------------------------- raw files


def find_videos(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of videos")
    # Links are kept here, even broken ones, so folder_clips can name them as unreadable.
    return sorted(p for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.suffix.lower() in VIDEO_SUFFIXES)


def link_problem(path: Path, root: Path) -> str | None:
    """Why a file under ``root`` must not be read, as preprocessing refuses it: a link that leads
    out of the folder (to another user's data, to /etc ...), or one that leads nowhere."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as err:  # dangling, or a loop
        return f"broken link: {getattr(err, 'strerror', None) or err}"
    if not real.is_file():
        return "not a file"
    if os.path.commonpath([real, root.resolve()]) != str(root.resolve()):
        return f"outside the videos folder: {path.relative_to(root)} is a link to a file outside it; refused"
    return None


def clip_key(path: Path, root: Path | None) -> str:
    """The relative path without its suffix: ``clip_00400`` for ``videos/clip_00400.mp4`` under
    ``videos/``, as preprocessing names a sample after its video."""
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return rel.with_suffix("").as_posix()


def default_view() -> str:
    """The test view evaluation uses unless told otherwise (``eval.view``'s default)."""
    from eval.config import EvalConfig

    return EvalConfig.view


def read_video_file(path: str | Path, loader_cfg, pre_cfg, key: str | None = None,
                    view: str | None = None) -> list[Clip]:
    """One :class:`Clip` per window of a raw video file; raises ``BadVideo`` / ``CorruptVideo``
    when the file cannot be read (the caller decides whether to skip)."""
    from preprocess.normalise import normalise_video
    from preprocess.probe import probe_source
    from train.data.augment import draw_augment
    from train.data.cpu_backend import decode_planned
    from train.data.samples import PlannedSample
    from train.data.sampling import sample_frame_indices

    path = Path(path)
    key = key or path.stem
    probe = probe_source(path, pre_cfg)
    clips = []
    with tempfile.TemporaryDirectory(prefix="smaug-embed-") as tmp:
        for out in normalise_video(path, probe, Path(tmp), "v", pre_cfg):
            info = out["video"]
            # the evaluation plan of train.data.samples.plan_sample (train=False), without a caption
            indices = sample_frame_indices(int(info["num_frames"]), loader_cfg.num_frames, loader_cfg.sampling,
                                           train=False, rng=None, stride=loader_cfg.contiguous_stride)
            augment = draw_augment(loader_cfg, int(info["height"]), int(info["width"]), train=False, rng=None,
                                   view=view or default_view())
            sample_key = key + out["suffix"]
            plan = PlannedSample(sample_key, Path(out["path"]).read_bytes(), {"key": sample_key, "video": info},
                                 indices, augment, "")
            clips.append(Clip(sample_key, str(path), decode_planned(plan, loader_cfg)))
    return clips


def folder_clips(folder: str | Path, loader_cfg, pre_cfg, progress: bool = True,
                 view: str | None = None) -> Iterator[Clip | Unreadable]:
    """Every video file under ``folder`` (sorted), as clips; unreadable files as :class:`Unreadable`."""
    from tqdm import tqdm

    from preprocess.probe import BadVideo
    from train.data.decode import CorruptVideo

    root = Path(folder)
    for path in tqdm(find_videos(root), desc="embed videos", unit="file", disable=not progress):
        problem = link_problem(path, root)
        if problem:
            yield Unreadable(str(path), problem)
            continue
        try:
            yield from read_video_file(path, loader_cfg, pre_cfg, clip_key(path, root), view)
        except (BadVideo, CorruptVideo) as err:
            yield Unreadable(str(path), str(err))


def shard_clips(shards: str, loader_cfg, progress: bool = True, tokenizer_path=None,
                view: str | None = None) -> Iterator[Clip | Unreadable]:
    """Samples of WebDataset shards through the evaluation loader; the loader's skipped samples
    (broken video, no caption) come out as :class:`Unreadable` naming the key."""
    from tqdm import tqdm

    from train.data import build_loader

    loader = build_loader(loader_cfg, shards, train=False, text="caption", seed=0, tokenizer_path=tokenizer_path,
                          view=view or default_view())
    bar = tqdm(desc="embed videos", unit="clip", disable=not progress)
    reported = 0
    for batch in loader:
        for i, key in enumerate(batch["key"]):
            source = batch["meta"][i].get("source") or ""
            yield Clip(key, f"{shards}#{key}" if not source else source, batch["video"][i])
        bar.update(len(batch["key"]))
        for skipped_key, reason in loader.stats["skipped_keys"][reported:]:
            yield Unreadable(f"{shards}#{skipped_key}", reason)
        reported = len(loader.stats["skipped_keys"])
    for skipped_key, reason in loader.stats["skipped_keys"][reported:]:
        yield Unreadable(f"{shards}#{skipped_key}", reason)
    bar.close()


def is_shard_source(videos: str | Path) -> bool:
    """Shards: a ``.tar`` path or brace pattern, or a folder whose top level holds ``.tar`` files
    and no video files (a folder of videos is embedded file by file)."""
    text = str(videos)
    if text.endswith(".tar") or "{" in text or "::" in text:
        return True
    path = Path(videos)
    return path.is_dir() and any(path.glob("*.tar")) and not any(
        p.suffix.lower() in VIDEO_SUFFIXES for p in path.iterdir() if p.is_file())


# --------------------------------------------------------------------------- the model side


def thumbnails(video: torch.Tensor, loader_cfg, quality: int = 85) -> list[bytes]:
    """JPEG bytes of each frame of a normalised clip ``[T, 3, S, S]``: what the model saw."""
    from PIL import Image

    mean = torch.tensor(loader_cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(loader_cfg.std).view(1, 3, 1, 1)
    pixels = ((video.float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    out = []
    for frame in pixels.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


@torch.no_grad()
def embed_clips(model, clips: Iterator[Clip | Unreadable], loader_cfg, *, batch_size: int = 8,
                keep_tokens: bool = False, keep_frames: bool = True, sparsify: bool = True) -> Embedded:
    """Encode clips in batches (``encode_video(mask=False)``, as evaluation does)."""
    model.eval()
    device = next(model.parameters()).device
    result, pending = Embedded(), []

    def flush():
        if not pending:
            return
        tokens, feats = model.encode_video(torch.stack([c.video for c in pending]).to(device),
                                           mask=False, sparsify=sparsify)
        for i, clip in enumerate(pending):
            result.keys.append(clip.key)
            result.sources.append(clip.source)
            result.feats.append(feats[i].float().cpu().numpy())
            if keep_tokens:
                result.tokens.append(tokens[i].float().cpu().numpy())
            if keep_frames:
                result.frames.append(thumbnails(clip.video, loader_cfg))
        pending.clear()

    for item in clips:
        if isinstance(item, Unreadable):
            result.skipped.append(item)
            continue
        pending.append(item)
        if len(pending) == batch_size:
            flush()
    flush()
    return result


def embed_videos(model, videos: str | Path, *, batch_size: int = 8, keep_tokens: bool = False,
                 keep_frames: bool = True, progress: bool = True, view: str | None = None) -> Embedded:
    """Every clip of a folder of video files or of shards (see the module docstring);
    ``view``: the test view (None: evaluation's default)."""
    loader_cfg = loader_settings(model, batch_size=batch_size)
    if is_shard_source(videos):
        clips = shard_clips(str(videos), loader_cfg, progress, tokenizer_path=model.cfg.text.path, view=view)
    else:
        clips = folder_clips(videos, loader_cfg, preprocess_settings(model), progress, view=view)
    return embed_clips(model, clips, loader_cfg, batch_size=batch_size, keep_tokens=keep_tokens,
                       keep_frames=keep_frames)


def embed_video_files(model, paths: Sequence[str | Path], view: str | None = None) -> torch.Tensor:
    """L2-normalised features ``[N, E]`` of video files (one row per window; unreadable: error)."""
    loader_cfg = loader_settings(model)
    pre_cfg = preprocess_settings(model)
    clips = (c for p in paths for c in read_video_file(p, loader_cfg, pre_cfg, view=view))
    return torch.from_numpy(embed_clips(model, clips, loader_cfg, keep_frames=False).matrix())


def embed_texts(model, texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised text features ``[N, E]``, encoded as retrieval evaluation encodes captions."""
    from eval.retrieval import encode_texts
    from train.data.text import load_tokenizer

    texts = [str(t) for t in texts]
    if not texts or any(not t.strip() for t in texts):
        raise ValueError("texts: give at least one, none of them empty")
    tokenizer = load_tokenizer(model.cfg.text.path)
    max_len = loader_settings(model).max_len
    return encode_texts(model, tokenizer, texts, max_len)[2]
