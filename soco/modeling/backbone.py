"""Helpers of the image-level methods (MoCo v2, SwAV, DenseCL): a res5 backbone and global pooling."""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.modeling import Backbone, build_backbone
from torch import Tensor

__all__ = ["build_res5_backbone", "global_pool"]


def build_res5_backbone(cfg: CfgNode) -> tuple[Backbone, int]:
    """Detectron2's backbone of ``cfg`` and the channel count of its ``res5`` output (2048 for ResNet-50)."""
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    if "res5" not in shapes:
        raise ValueError(
            f"image-level pretraining needs the backbone to output 'res5', but it outputs {sorted(shapes)}: "
            f"set MODEL.RESNETS.OUT_FEATURES to ['res5'] (now {cfg.MODEL.RESNETS.OUT_FEATURES})"
        )
    return backbone, shapes["res5"].channels


def global_pool(features: Tensor) -> Tensor:
    """Global average pooling: ``(B, C, H, W)`` -> ``(B, C)``."""
    return features.mean(dim=(2, 3))
