"""Completeness and shape checks of converted weights: every problem names the tensor."""

import numpy as np
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from transfer_testing import tiny_cfg, torchvision_resnet

from soco.checkpoint import CheckpointLayoutError, convert_checkpoint, validate_transfer_weights
from soco.modeling.soco import build_res5_head


@pytest.fixture(scope="module")
def r18():
    return convert_checkpoint(torchvision_resnet(18))[0]


@pytest.fixture(scope="module")
def fpn_weights(r18):
    """R18 + a 4conv1fc-style FPN/box head with 16 channels (lateral 1x1 + BN, output 3x3 + BN)."""
    rng = np.random.default_rng(0)
    weights = dict(r18)

    def conv_bn(name, c_out, c_in, k):
        weights[f"{name}.weight"] = rng.random((c_out, c_in, k, k), dtype=np.float32)
        for p in ("weight", "bias", "running_mean", "running_var"):
            weights[f"{name}.norm.{p}"] = rng.random(c_out, dtype=np.float32)

    for level, c_in in zip(range(2, 6), (64, 128, 256, 512), strict=True):
        conv_bn(f"fpn_lateral{level}", 16, c_in, 1)
        conv_bn(f"fpn_output{level}", 16, 16, 3)
    for k in range(1, 5):
        conv_bn(f"box_head.conv{k}", 16, 16, 3)
    weights["box_head.fc1.weight"] = rng.random((32, 16 * 7 * 7), dtype=np.float32)
    weights["box_head.fc1.bias"] = rng.random(32, dtype=np.float32)
    return weights


def without(weights, *names):
    return {k: v for k, v in weights.items() if k not in names}


def test_depths_and_description(r18, fpn_weights):
    assert validate_transfer_weights(r18).depth == 18
    arch = validate_transfer_weights(convert_checkpoint(torchvision_resnet(50))[0])
    assert (arch.depth, arch.block, arch.stage_channels) == (50, "bottleneck", (256, 512, 1024, 2048))
    full = validate_transfer_weights(fpn_weights)
    assert (full.fpn_channels, full.box_head) == (16, "4conv1fc")
    assert "FPN P2-P5 (16 ch)" in full.describe()


def test_c4_model_of_a_basic_block_resnet_has_a_bottleneck_res5():
    cfg = tiny_cfg(["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"])
    cfg.merge_from_list(["MODEL.RESNETS.OUT_FEATURES", "['res4']"])
    state = {
        f"backbone.{k}": v for k, v in build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict().items()
    }
    state.update({f"roi_heads.res5.{k}": v for k, v in build_res5_head(cfg)[0].state_dict().items()})
    weights, report = convert_checkpoint({"model": state})
    assert (report.architecture.depth, report.architecture.res5_block) == (18, "bottleneck")
    assert "C4" in report.architecture.describe()


def test_missing_batchnorm_statistic_is_named(r18):
    with pytest.raises(CheckpointLayoutError, match=r"'res4\.1\.conv1\.norm\.running_var'"):
        validate_transfer_weights(without(r18, "res4.1.conv1.norm.running_var"))


def test_missing_stage_and_block_are_named(r18):
    no_res5 = {k: v for k, v in r18.items() if not k.startswith("res5.")}
    with pytest.raises(CheckpointLayoutError, match=r"'res5\.\*'"):
        validate_transfer_weights(no_res5)
    no_block = {k: v for k, v in r18.items() if not k.startswith("res3.0.")}
    with pytest.raises(CheckpointLayoutError, match=r"'res3\.0\.\*'"):
        validate_transfer_weights(no_block)


def test_channel_mismatch_is_named(r18):
    broken = dict(r18)
    broken["res3.1.conv1.weight"] = np.zeros((128, 64, 3, 3), dtype=np.float32)
    with pytest.raises(CheckpointLayoutError, match=r"shape mismatch: 'res3\.1\.conv1\.weight'"):
        validate_transfer_weights(broken)
    broken = dict(r18)
    broken["res2.1.conv2.norm.bias"] = np.zeros(65, dtype=np.float32)
    with pytest.raises(CheckpointLayoutError, match=r"'res2\.1\.conv2\.norm\.bias' has 65 entries"):
        validate_transfer_weights(broken)


def test_unexpected_shortcut_is_reported(r18):
    extra = dict(r18)
    extra["res2.0.shortcut.weight"] = np.zeros((64, 64, 1, 1), dtype=np.float32)
    with pytest.raises(CheckpointLayoutError, match=r"'res2\.0\.shortcut\.\*'"):
        validate_transfer_weights(extra)


def test_fpn_and_box_head_problems_are_named(fpn_weights):
    with pytest.raises(CheckpointLayoutError, match=r"'fpn_output4\.norm\.bias'"):
        validate_transfer_weights(without(fpn_weights, "fpn_output4.norm.bias"))
    with pytest.raises(CheckpointLayoutError, match=r"'box_head\.conv3\.\*'"):
        validate_transfer_weights(
            {k: v for k, v in fpn_weights.items() if not k.startswith("box_head.conv3.")}
        )
    broken = dict(fpn_weights)
    broken["fpn_lateral3.weight"] = np.zeros((16, 64, 1, 1), dtype=np.float32)
    with pytest.raises(CheckpointLayoutError, match=r"shape mismatch: 'fpn_lateral3\.weight'"):
        validate_transfer_weights(broken)
    broken = dict(fpn_weights)
    broken["box_head.fc1.weight"] = np.zeros((32, 16 * 50), dtype=np.float32)
    with pytest.raises(CheckpointLayoutError, match=r"'box_head\.fc1\.weight' takes 800 features"):
        validate_transfer_weights(broken)


def test_conv_bias_in_a_resnet_is_rejected(r18):
    extra = dict(r18)
    extra["res2.0.conv1.bias"] = torch.zeros(64).numpy()
    with pytest.raises(CheckpointLayoutError, match=r"'res2\.0\.conv1\.bias'"):
        validate_transfer_weights(extra)
