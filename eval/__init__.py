"""Evaluation and the paper's tables: checkpoints in, results and tables out.

Nothing here trains or writes a checkpoint (fine-tuning is :mod:`train.finetune`). Modules, in
the order results flow through them:

- ``metrics``     R@K / median / mean rank (pessimistic ties), QA and multiple-choice accuracy
- ``retrieval``   VTC ranking, VTM re-ranking of the top k, multi-caption and paragraph queries
- ``qa``          open-ended and multiple-choice accuracy of the task heads (:mod:`train.tasks`)
- ``shuffle``     HiTeA's shuffle test (a fixed frame permutation per clip)
- ``evaluate``    ``python -m eval.evaluate`` -> results/eval/<run>.json, results/metrics/eval-<run>.json
- ``tables``      ``python -m eval.tables`` -> results/tables/*.md|csv
- ``benchmarks``  presets for the real benchmarks (eval/presets/*.yaml)
- ``config``      the ``eval:`` and ``tables:`` sections of params.yaml
"""
