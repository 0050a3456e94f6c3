"""Several shard sets in one pre-training run, by weight (``pretrain.sources``).

Each source (a video set such as WebVid, or an image-caption set such as CC3M read as clips of
one repeated frame) has its own loader and its own :class:`train.run.BatchStream`, so it runs
through its epochs at its own pace. :class:`MixedStream` draws the source of every batch by
weight.

Why one source per batch rather than a mix inside each batch: Singularity's and VindLU's
``MetaLoader`` pick one dataset's loader per iteration (in proportion to its size), and so does
this. A batch from one source keeps VTC's in-batch negatives of one kind: with images and videos
in one batch, a caption could be told from the others by "is it a still" alone, which teaches
the contrastive loss nothing about content. It also keeps each backend's batches homogeneous
(the DALI path runs one pipeline per source, as the CPU path runs one DataLoader per source),
and each loader reads its own shards with its own rank and worker split, as a single-source
run does.

The draw of batch ``i`` depends only on (seed, i), never on the loaders, so every DDP rank takes
the same source at the same step and a resumed run continues the same sequence from the number
of batches drawn, which the checkpoint records with each source's position. The samples each
source gave are counted as the trainer takes them (``samples``, by each source's stream): the
run's metrics and log report them.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from train.run import BatchStream


def pick_source(seed: int, index: int, names: list[str], weights: list[float]) -> str:
    """The source of batch ``index``: a draw with probabilities ``weights / sum(weights)``."""
    return random.Random(f"sources/{seed}/{index}").choices(names, weights=weights)[0]


class MixedStream:
    """Endless batches, each from one of several :class:`BatchStream`, chosen by weight.

    It has BatchStream's interface (``state()``, ``skipped``, ``skipped_keys``), so the trainer
    and the checkpoint treat a several-source run as a one-source run.
    """

    def __init__(self, streams: dict[str, BatchStream], weights: dict[str, float], *, seed: int,
                 drawn: int = 0) -> None:
        if set(streams) != set(weights):
            raise ValueError(f"streams {sorted(streams)} and weights {sorted(weights)} name other sources")
        self.streams, self.seed, self.drawn = streams, seed, drawn
        self.names = list(streams)
        self.weights = [float(weights[n]) for n in self.names]

    def state(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "sources": {n: s.state() for n, s in self.streams.items()}}

    @property
    def samples(self) -> dict[str, int]:
        """Samples each source has given (its stream counts them, resumes included)."""
        return {n: s.samples for n, s in self.streams.items()}

    @classmethod
    def resumed(cls, loaders: dict, weights: dict[str, float], *, seed: int,
                state: dict[str, Any] | None) -> "MixedStream":
        """Streams over ``loaders`` from the position a checkpoint's ``state()`` recorded."""
        state = state or {}
        positions = state.get("sources", {})
        streams = {n: BatchStream(loader, **positions.get(n, {})) for n, loader in loaders.items()}
        return cls(streams, weights, seed=seed, drawn=state.get("drawn", 0))

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.streams.values())

    @property
    def skipped_keys(self) -> list:
        return [k for s in self.streams.values() for k in s.skipped_keys]

    def __iter__(self) -> Iterator[dict]:
        # A source's iterator starts (its loader workers start) at its first draw, not before.
        iterators: dict[str, Iterator[dict]] = {}
        while True:
            name = pick_source(self.seed, self.drawn, self.names, self.weights)
            if name not in iterators:
                iterators[name] = iter(self.streams[name])
            batch = next(iterators[name])
            self.drawn += 1
            yield batch
