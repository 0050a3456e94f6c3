"""Training: shards in, checkpoints out (pre-training and fine-tuning).

Subpackages: ``train.data`` (the loader) and ``train.model`` (the SMAUG model). Modules here,
one concern each: ``config`` (the ``pretrain:``, ``finetune:`` and ``cost:`` sections),
``schedule`` (warm-up + cosine), ``distributed`` (DDP from RANK/WORLD_SIZE/...), ``signals``
(stop signals from the first instant, exit 75), ``checkpoint``
(atomic safetensors + weights_only checkpoints, loading), ``trainer`` (the loop), ``run`` (what
both programs share around the loop: the run folder and its identity, resume, the endless batch
stream), ``tasks`` (fine-tuning heads: QA classifier, multiple choice), ``cost`` (FLOPs, memory,
GPU-hour projection), and the programs ``pretrain`` (``python -m train.pretrain``),
``finetune`` (``python -m train.finetune``) and ``bench`` (``python -m train.bench``: SMAUG vs
dense speed, the one speed benchmark of the trainer).
"""
