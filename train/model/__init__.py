"""The SMAUG model: ViT video tower with masking and space-time token sparsification, BERT
text tower, cross-modal fusion and the VTC / VTM / MLM / MVM objectives.

``SMAUG(cfg)`` with ``cfg = pipeline.config.section(params, ModelConfig, "model")``.
"""

from .config import ModelConfig
from .smaug import SMAUG, ModelOutput

__all__ = ["SMAUG", "ModelConfig", "ModelOutput"]
