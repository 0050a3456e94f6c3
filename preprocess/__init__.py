"""Preprocessing: annotation files + raw videos -> normalised WebDataset shards.

    python -m preprocess --annotations FILE --videos DIR_OR_TAR --out DIR

1. ingest (:mod:`preprocess.ingest`, formats in :mod:`preprocess.formats`): every annotation
   row into one manifest, one row per video sample, keys derived from the video id;
2. normalise (:mod:`preprocess.probe`, :mod:`preprocess.normalise`): probe, then transcode to
   H.264 / yuv420p / constant fps / closed GOP / no B-frames / short side resized;
3. shard (:mod:`preprocess.shard`): deterministic tars of ``<key>.mp4`` + ``<key>.json`` and
   per-shard stats, written atomically so reruns resume;
4. finalize (:mod:`preprocess.api`): ``stats.parquet``, one row per input row, ok or failed
   with the reason.

:mod:`preprocess.api` holds the four functions the CLI, DVC and the SLURM launcher call.
"""
