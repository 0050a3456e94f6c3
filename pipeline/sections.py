"""Every section of the pipeline's settings checked at once, where a pipeline starts.

Each program builds and checks the sections it reads (:func:`pipeline.config.section`), so on its
own a bad ``eval.*`` value in ``params.yaml`` is found by the eval stage, after the data and
training stages have run: minutes here, days at paper scale. The stages that start a pipeline
(``generate`` under DVC, a training stage run with ``--as-stage``) call
:func:`check_every_section` first, so `dvc repro` stops at once with the one ``error:`` line the
reading program would have printed. Unknown names are refused everywhere already
(:func:`pipeline.config.check_names`); this adds the values.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from pipeline.config import section, top_level_deterministic, top_level_seed

# section -> the dataclass its program builds it with ("module:Class")
SECTION_TYPES = {
    "synthetic": "pipeline.synthetic.config:SyntheticConfig",
    "preprocess": "preprocess.config:PreprocessConfig",
    "loader": "train.data.config:LoaderConfig",
    "model": "train.model.config:ModelConfig",
    "pretrain": "train.config:PretrainConfig",
    "log": "train.config:LogConfig",
    "cost": "train.config:CostConfig",
    "finetune": "train.config:FinetuneConfig",
    "eval": "eval.config:EvalConfig",
    "tables": "eval.config:TablesConfig",
    "ablation": "eval.config:AblationConfig",
    "launch": "pipeline.launch.config:LaunchConfig",
}
# the top-level settings that are single values, not sections (each has its own check below)
TOP_LEVEL_VALUES = ("seed", "deterministic")
# model's module imports torch (1-2 s): checked only where torch is loaded anyway (the training
# stages), not in the data stages
NEEDS_TORCH = ("model",)


def check_every_section(params: dict[str, Any]) -> list[str]:
    """Build every section of ``params`` (and the top-level seed and determinism); returns the
    sections checked.

    Raises the section's own :class:`~pipeline.config.ConfigError` naming the key.
    """
    top_level_seed(params)
    top_level_deterministic(params)
    checked = []
    for name, where in SECTION_TYPES.items():
        if name in NEEDS_TORCH and "torch" not in sys.modules:
            continue
        module, cls = where.split(":")
        section(params, getattr(importlib.import_module(module), cls), name)
        checked.append(name)
    return checked
