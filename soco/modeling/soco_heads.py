"""SoCo's RoI heads, pooled RoIs (R, C, S, S) -> box features (R, F), named as in a Detectron2 Mask R-CNN.

=================  ==========================================================================================
``ConvFCROIHead``  FPN variants: Detectron2's box head (4conv1fc), ``roi_heads.box_head.*``; F = FC_DIM
``Res5ROIHead``    C4: res5 (stride 2) then the mean over its 7 x 7 output, ``roi_heads.res5.*``; F = 2048
=================  ==========================================================================================
"""

from __future__ import annotations

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import BottleneckBlock, ResNet
from detectron2.modeling.roi_heads import build_box_head
from torch import Tensor, nn

__all__ = ["ConvFCROIHead", "Res5ROIHead", "build_res5_head"]


class ConvFCROIHead(nn.Module):
    """Detectron2's box head (``MODEL.ROI_BOX_HEAD.NAME``, SoCo: 4 conv + 1 fc) on pooled RoIs:
    (R, C, S, S) -> (R, FC_DIM).
    """

    @configurable
    def __init__(self, *, box_head: nn.Module):
        super().__init__()
        self.box_head = box_head
        self.output_channels = box_head.output_shape.channels

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec) -> dict:
        return {"box_head": build_box_head(cfg, input_shape)}

    def forward(self, pooled: Tensor) -> Tensor:
        return self.box_head(pooled)


def build_res5_head(cfg: CfgNode) -> tuple[nn.Sequential, int]:
    """The res5 stage run on C4 RoI features, shaped exactly like Detectron2's ``Res5ROIHeads.res5``
    (three bottleneck blocks, first stride 2), so the weights load into a C4 Mask R-CNN. Returns it and
    its output channels.
    """
    resnets = cfg.MODEL.RESNETS
    out_channels = resnets.RES2_OUT_CHANNELS * 8
    blocks = ResNet.make_stage(
        BottleneckBlock,
        3,
        stride_per_block=[2, 1, 1],
        in_channels=out_channels // 2,
        bottleneck_channels=resnets.NUM_GROUPS * resnets.WIDTH_PER_GROUP * 8,
        out_channels=out_channels,
        num_groups=resnets.NUM_GROUPS,
        norm=resnets.NORM,
        stride_in_1x1=resnets.STRIDE_IN_1X1,
    )
    return nn.Sequential(*blocks), out_channels


class Res5ROIHead(nn.Module):
    """Detectron2's ``Res5ROIHeads`` box path on pooled res4 RoIs: (R, C4, 14, 14) -> res5 -> (R, C5, 7, 7)
    -> mean -> (R, C5).
    """

    @configurable
    def __init__(self, *, res5: nn.Module, output_channels: int):
        super().__init__()
        self.res5 = res5
        self.output_channels = output_channels

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        res5, channels = build_res5_head(cfg)
        return {"res5": res5, "output_channels": channels}

    def forward(self, pooled: Tensor) -> Tensor:
        return self.res5(pooled).mean(dim=(2, 3))
