"""Training: shards in, checkpoints out.

Subpackages: ``train.data`` (the loader) and ``train.model`` (the SMAUG model). Modules here,
one concern each: ``config`` (the ``pretrain:`` section), ``schedule`` (warm-up + cosine),
``distributed`` (DDP from RANK/WORLD_SIZE/...), ``signals`` (stop signals, exit 75),
``checkpoint`` (atomic safetensors + weights_only checkpoints, ``load_model``), ``trainer`` (the loop shared with fine-tuning), ``cost`` (FLOPs,
memory, GPU-hour projection), ``pretrain`` (``python -m train.pretrain``) and ``bench``
(``python -m train.bench``: SMAUG vs dense speed).
"""
