"""Encoded test clips kept for one model, so tests that read the same clips encode each once.

The zero-shot caption tests (MSRVTT-MC-style choice, LSMDC-FiB-style blanks) read the same test
clips from two shard sets. Clips are keyed by their decoded frames' content (a digest of the
tensor) and the sparsify flag, never by the sample key alone: two test sets may name different
videos alike. One memo serves one model; a new model needs a new memo.
"""

from __future__ import annotations

import hashlib

import torch


class VideoMemo:
    def __init__(self) -> None:
        self._store: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._store)

    @torch.no_grad()
    def encode(self, model, clips: torch.Tensor, *, sparsify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``model.encode_video(clips, mask=False)``: (tokens [B, N, D], feats [B, E]), encoding only
        the clips not seen before."""
        digests = [(hashlib.sha1(c.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), sparsify)
                   for c in clips]
        missing = [i for i, d in enumerate(digests) if d not in self._store]
        if missing:
            tokens, feats = model.encode_video(clips[missing], mask=False, sparsify=sparsify)
            for j, i in enumerate(missing):
                self._store[digests[i]] = (tokens[j], feats[j])
        return (torch.stack([self._store[d][0] for d in digests]), torch.stack([self._store[d][1] for d in digests]))
