"""``Res5ROIHeadsExtraNorm``: the C4 RoI head of the MoCo transfer protocol.

Self-supervised backbones are fine-tuned with normalization everywhere; in a C4 detector the res5
stage runs on RoI features inside the RoI head, and MoCo's protocol appends one more norm layer
(``res5.norm``, of type ``MODEL.RESNETS.NORM``) after it. Upstream Detectron2 does not ship this head.
"""

from __future__ import annotations

import logging

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads

logger = logging.getLogger(__name__)


class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """``Res5ROIHeads`` whose res5 sequential ends with an extra norm layer named ``norm``."""

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        res5 = ret["res5"]  # nn.Sequential of res5 blocks: (R, C, 14, 14) -> (R, 2048, 7, 7)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, res5[-1].out_channels))
        return ret


def _register(cls: type) -> None:
    """Register ``cls`` once; importing this module again (or another copy of it) must not fail."""
    if cls.__name__ not in ROI_HEADS_REGISTRY:
        ROI_HEADS_REGISTRY.register(cls)
    elif ROI_HEADS_REGISTRY.get(cls.__name__).__module__ != cls.__module__:
        logger.warning(
            "ROI head %s is already registered by %s; keeping that one",
            cls.__name__,
            ROI_HEADS_REGISTRY.get(cls.__name__).__module__,
        )


_register(Res5ROIHeadsExtraNorm)
