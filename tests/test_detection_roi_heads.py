"""Res5ROIHeadsExtraNorm: registered once, res5 ends with the extra norm, and it runs."""

import importlib

import torch
from detectron2.modeling import ROI_HEADS_REGISTRY
from transfer_testing import TINY_R50, build_transfer_model

import soco.detection.roi_heads as roi_heads_module


def test_registered_and_reimport_does_not_fail():
    assert ROI_HEADS_REGISTRY.get("Res5ROIHeadsExtraNorm") is roi_heads_module.Res5ROIHeadsExtraNorm
    importlib.reload(roi_heads_module)  # a second execution of the module body must not raise
    assert "Res5ROIHeadsExtraNorm" in ROI_HEADS_REGISTRY


def test_res5_ends_with_a_norm_of_resnets_norm_type_that_is_applied():
    model = build_transfer_model(
        "coco/mask_rcnn_R_50_C4_1x_scratch.yaml", [*TINY_R50, "MODEL.RESNETS.NORM", "BN"]
    )
    res5 = model.roi_heads.res5
    assert list(dict(res5.named_children()))[-1] == "norm"
    assert type(res5.norm) is torch.nn.BatchNorm2d and res5.norm.num_features == 256
    seen = []
    res5.norm.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    with torch.no_grad():
        outputs = model([{"image": torch.randint(0, 255, (3, 64, 80), dtype=torch.uint8)}])
    assert seen and seen[0][1:] == (256, 7, 7), "the extra norm runs on the (R, 256, 7, 7) res5 features"
    assert {"instances"} == set(outputs[0])
