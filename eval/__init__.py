"""Evaluation, fine-tuning and the paper's tables (checkpoints in, tables out).

Modules, in the order results flow through them:

- ``metrics``     R@K / median / mean rank (pessimistic ties), QA and multiple-choice accuracy
- ``retrieval``   VTC ranking, VTM re-ranking of the top k, multi-caption and paragraph queries
- ``qa``          answer vocabulary, the open-ended QA head, multiple choice by VTM
- ``shuffle``     HiTeA's shuffle test (a fixed frame permutation per clip)
- ``checkpoints`` finding, fingerprinting (sha256) and safely loading checkpoints
- ``finetune``    ``python -m eval.finetune --task retrieval|qa|mc`` (the trainer's loop)
- ``evaluate``    ``python -m eval.evaluate`` -> results/eval/<recipe>.json, results/metrics/eval-<recipe>.json
- ``tables``      ``python -m eval.tables`` -> results/tables/*.md|csv
- ``benchmarks``  presets for the real benchmarks (eval/presets/*.yaml)
- ``config``      the ``finetune:``, ``eval:`` and ``tables:`` sections of params.yaml
"""
