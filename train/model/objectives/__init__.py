"""Pre-training objectives, one module each: VTC, VTM, MLM, MVM, temporal order (weights in ``model.objectives``)."""

from .mlm import MLMHead, mlm_loss
from .mvm import MVMDecoder, masked_positions, mvm_loss
from .order import order_loss, perturb_time
from .targets import TARGETS, hog_target, pixel_target
from .vtc import VTC, gather_with_grad, vtc_loss
from .vtm import VTMHead, sample_negatives, vtm_loss

__all__ = [
    "MLMHead", "mlm_loss", "MVMDecoder", "masked_positions", "mvm_loss", "TARGETS", "hog_target", "pixel_target",
    "order_loss", "perturb_time", "VTC", "gather_with_grad", "vtc_loss", "VTMHead", "sample_negatives", "vtm_loss",
]
