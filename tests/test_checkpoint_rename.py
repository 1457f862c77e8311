"""torchvision <-> Detectron2 ResNet names, and the original SoCo FPN / head names."""

import pytest
import torchvision
from transfer_testing import torchvision_oracle

from soco.checkpoint.rename import (
    UnknownTensorName,
    detectron2_box_head_name,
    detectron2_fpn_name,
    detectron2_to_torchvision,
    mmdet_fpn_to_detectron2,
    soco_head_to_detectron2,
    torchvision_to_detectron2,
)


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_names_agree_with_detectron2_tool_and_invert(depth):
    names = [
        k for k in getattr(torchvision.models, f"resnet{depth}")().state_dict() if not k.startswith("fc.")
    ]
    for name in names:
        converted = torchvision_to_detectron2(name)
        assert converted == torchvision_oracle(name)
        assert detectron2_to_torchvision(converted) == name


@pytest.mark.parametrize(
    ("torchvision_name", "detectron2_name"),
    [
        ("layer1.0.bn2.running_var", "res2.0.conv2.norm.running_var"),
        ("layer3.0.downsample.1.weight", "res4.0.shortcut.norm.weight"),
        ("layer4.2.conv3.weight", "res5.2.conv3.weight"),
        ("bn1.num_batches_tracked", "stem.conv1.norm.num_batches_tracked"),
        ("conv1.weight", "stem.conv1.weight"),
    ],
)
def test_documented_examples(torchvision_name, detectron2_name):
    assert torchvision_to_detectron2(torchvision_name) == detectron2_name
    assert detectron2_to_torchvision(detectron2_name) == torchvision_name


@pytest.mark.parametrize(
    "name", ["fc.weight", "layer5.0.conv1.weight", "layer1.0.bn4.weight", "layer1.0.conv1.bias", "bn1.gamma"]
)
def test_unknown_torchvision_names_raise(name):
    with pytest.raises(UnknownTensorName, match="torchvision ResNet"):
        torchvision_to_detectron2(name)


@pytest.mark.parametrize("name", ["stem.fc.0.weight", "res6.0.conv1.weight", "res2.0.conv1.norm.gamma"])
def test_unknown_detectron2_names_raise(name):
    with pytest.raises(UnknownTensorName):
        detectron2_to_torchvision(name)


def test_original_soco_neck_and_head_names():
    assert mmdet_fpn_to_detectron2("lateral_convs.0.conv.weight") == "fpn_lateral2.weight"
    assert mmdet_fpn_to_detectron2("lateral_convs.3.bn.running_mean") == "fpn_lateral5.norm.running_mean"
    assert mmdet_fpn_to_detectron2("fpn_convs.1.bn.weight") == "fpn_output3.norm.weight"
    assert soco_head_to_detectron2("conv4.weight") == "box_head.conv4.weight"
    assert soco_head_to_detectron2("bn2.num_batches_tracked") == "box_head.conv2.norm.num_batches_tracked"
    assert soco_head_to_detectron2("fc1.bias") == "box_head.fc1.bias"
    for bad in ("lateral_convs.4.conv.weight", "fpn_convs.0.conv.bias", "extra_convs.0.conv.weight"):
        with pytest.raises(UnknownTensorName):
            mmdet_fpn_to_detectron2(bad)
    with pytest.raises(UnknownTensorName):
        soco_head_to_detectron2("ac1.weight")


def test_detectron2_fpn_and_box_head_validators():
    assert detectron2_fpn_name("fpn_output5.norm.bias") == "fpn_output5.norm.bias"
    assert detectron2_box_head_name("box_head.fc1.weight") == "box_head.fc1.weight"
    with pytest.raises(UnknownTensorName):
        detectron2_fpn_name("fpn_lateral6.weight")
    with pytest.raises(UnknownTensorName):
        detectron2_box_head_name("box_head.cls_score.weight")
