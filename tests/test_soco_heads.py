"""SoCo's RoI heads (``soco.modeling.soco_heads``): Detectron2 names, shapes, the box features."""

from __future__ import annotations

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import Res5ROIHeads
from soco_testing import tiny_cfg

from soco.modeling.soco_heads import ConvFCROIHead, Res5ROIHead


def test_conv_fc_head_is_detectron2s_box_head_under_its_name():
    cfg = tiny_cfg("fpn")
    head = ConvFCROIHead(cfg, ShapeSpec(channels=32, height=7, width=7)).eval()
    names = list(head.state_dict())
    assert names and all(name.startswith("box_head.") for name in names)
    assert {"box_head.conv1.weight", "box_head.conv4.norm.running_var", "box_head.fc1.weight"} <= set(names)
    pooled = torch.randn(5, 32, 7, 7)
    features = head(pooled)
    assert features.shape == (5, cfg.MODEL.ROI_BOX_HEAD.FC_DIM) == (5, head.output_channels)
    torch.testing.assert_close(features, head.box_head(pooled))


def test_res5_head_is_detectron2s_res5_stage_then_the_mean():
    cfg = tiny_cfg("c4")
    head = Res5ROIHead(cfg).eval()
    detectron2_res5, channels = Res5ROIHeads._build_res5_block(cfg)
    ours = {name: value.shape for name, value in head.state_dict().items()}
    theirs = {f"res5.{name}": value.shape for name, value in detectron2_res5.state_dict().items()}
    assert ours == theirs and head.output_channels == channels
    pooled = torch.randn(3, channels // 2, 14, 14)  # res4 RoIs of POOLER_RESOLUTION 14
    stage = head.res5(pooled)
    assert stage.shape == (3, channels, 7, 7)
    torch.testing.assert_close(head(pooled), stage.mean(dim=(2, 3)))
