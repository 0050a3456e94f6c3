"""The built-in synthetic video-text benchmark (DVC stage ``generate``).

Short clips of coloured shapes on plain, gradient or textured backgrounds, with motions
and ordered events, written as real video files (MP4/H.264, WebM/VP9, AVI/MPEG-4, GIF)
with captions and questions in the formats of WebVid, MSRVTT, MSRVTT-QA and TGIF-QA.
It lets the whole pipeline run and be tested without downloading data, and it is built to
test what matters for video-language models:

- temporal order: pairs of clips with the same objects and the same two events in
  swapped order ("turns blue, then moves left" vs "moves left, then turns blue");
- compositional generalisation: some colour+shape combinations never occur in
  train/val, and test clips showing them are marked ``held_out``.

Pipeline, one module each: ``scene`` (what a clip shows, sampled from an RNG) ->
``render`` (numpy frames) -> ``grammar`` (captions, QA, multiple choice) -> ``encode``
(ffmpeg) -> ``writers`` (annotation files, videos.tar); ``plan`` decides splits, pairs and
formats; ``generate`` runs it all with a process pool. Run ``python -m pipeline.synthetic``.
"""

from pipeline.synthetic.config import SyntheticConfig
from pipeline.synthetic.generate import generate

__all__ = ["SyntheticConfig", "generate"]
