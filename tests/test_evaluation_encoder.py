"""Probe encoders: architecture read off converted weights, weights loaded by name, boxes pooled as the
detector pools them (FPN: canonical level rule + ROIAlignV2 + box head; C4: res4 RoIAlign + res5)."""

import math
from dataclasses import replace

import pytest
import torch
from detectron2.structures import Boxes
from torchvision.ops import roi_align
from transfer_testing import image_level_checkpoint, soco_c4_checkpoint, soco_fpn_checkpoint

from soco.checkpoint import CheckpointLayoutError, convert_checkpoint
from soco.evaluation import C4ProbeEncoder, FPNProbeEncoder, architecture_from_weights, build_probe_encoder


def _encoder(checkpoint):
    weights, _ = convert_checkpoint(checkpoint)
    encoder = build_probe_encoder(architecture_from_weights(weights))
    encoder.load_weights(weights)
    return encoder, weights


def _image(height=256, width=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)


def test_architecture_is_read_off_the_weights():
    fpn = architecture_from_weights(convert_checkpoint(soco_fpn_checkpoint())[0])
    assert (fpn.kind, fpn.depth, fpn.fpn_channels, fpn.pooler_resolution) == ("fpn", 50, 32, 7)
    assert fpn.box_conv_dims == (32, 32, 32, 32) and fpn.box_fc_dims == (64,) and fpn.box_norm == "BN"
    assert fpn.stage_channels == (32, 64, 128, 256) and fpn.width_per_group == 8 and fpn.stem_channels == 16
    for checkpoint in (soco_c4_checkpoint(), image_level_checkpoint()):
        c4 = architecture_from_weights(convert_checkpoint(checkpoint)[0])
        assert (c4.kind, c4.res5_block, c4.res5_blocks, c4.fpn_channels) == ("c4", "bottleneck", 3, None)


def test_weights_land_under_the_detectors_names():
    encoder, weights = _encoder(soco_fpn_checkpoint())
    state = encoder.state_dict()
    assert isinstance(encoder, FPNProbeEncoder)
    for key, name in [
        ("backbone.bottom_up.res3.1.conv2.weight", "res3.1.conv2.weight"),
        ("backbone.bottom_up.stem.conv1.norm.running_var", "stem.conv1.norm.running_var"),
        ("backbone.fpn_lateral4.weight", "fpn_lateral4.weight"),
        ("roi_heads.box_head.fc1.bias", "box_head.fc1.bias"),
    ]:
        torch.testing.assert_close(state[key], torch.as_tensor(weights[name]))
    encoder, weights = _encoder(soco_c4_checkpoint())
    torch.testing.assert_close(encoder.state_dict()["roi_heads.res5.2.conv3.weight"],
                               torch.as_tensor(weights["res5.2.conv3.weight"]))  # fmt: skip


def test_missing_or_misshapen_weights_are_errors_naming_the_tensor():
    encoder, weights = _encoder(soco_fpn_checkpoint())
    with pytest.raises(CheckpointLayoutError, match="'box_head.fc1.weight'"):
        encoder.load_weights({k: v for k, v in weights.items() if k != "box_head.fc1.weight"})
    with pytest.raises(CheckpointLayoutError, match="shape mismatch: 'fpn_output3.weight'"):
        encoder.load_weights({**weights, "fpn_output3.weight": weights["fpn_output3.weight"][:4]})


def _canonical_level(side: float) -> int:
    """Detectron2's rule (FPN paper eq. 1): floor(4 + log2(sqrt(area) / 224)), clamped to p2..p5."""
    return min(5, max(2, math.floor(4 + math.log2(side / 224))))


@pytest.mark.parametrize(("x0", "y0", "side"), [(8.0, 20.0, 40.0), (30.5, 12.0, 112.0), (16.0, 24.0, 224.0)])
def test_fpn_box_is_pooled_on_the_canonical_level_at_its_pixels(x0, y0, side):
    encoder, _ = _encoder(soco_fpn_checkpoint(randomize=False))
    image = _image()
    box = torch.tensor([[x0, y0, x0 + side, y0 + side]])
    level = _canonical_level(side)
    with torch.no_grad():
        features = encoder.backbone(encoder.normalize([image]).tensor)
        manual = roi_align(
            features[f"p{level}"],
            [box],
            output_size=7,
            spatial_scale=1 / 2**level,
            sampling_ratio=0,
            aligned=True,
        )
        pooled = encoder.pooler([features[f"p{k}"] for k in range(2, 6)], [Boxes(box)])
        torch.testing.assert_close(pooled, manual)
        expected = encoder.roi_heads["box_head"](manual)
        torch.testing.assert_close(encoder.box_features([image], [box]), expected)
    assert expected.shape == (1, 64)


def test_fpn_boxes_of_several_images_come_out_image_by_image():
    encoder, _ = _encoder(soco_fpn_checkpoint(randomize=False))
    # same size: one batch pads both to 224 x 160, as each alone (padding shifts the features at the borders)
    images = [_image(200, 150, seed=1), _image(200, 150, seed=2)]
    boxes = [
        torch.tensor([[0.0, 0.0, 60.0, 90.0], [10.0, 20.0, 140.0, 190.0]]),
        torch.tensor([[5.0, 5.0, 50.0, 40.0]]),
    ]
    with torch.no_grad():
        together = encoder.box_features(images, boxes)
        alone = torch.cat([encoder.box_features([i], [b]) for i, b in zip(images, boxes, strict=True)])
    assert together.shape == (3, 64)
    torch.testing.assert_close(together, alone, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("checkpoint", [soco_c4_checkpoint, image_level_checkpoint])
def test_c4_box_goes_through_res4_roialign_res5_and_the_mean(checkpoint):
    encoder, _ = _encoder(checkpoint())
    assert isinstance(encoder, C4ProbeEncoder)
    image, box = _image(128, 96), torch.tensor([[10.0, 12.0, 70.0, 90.0]])
    with torch.no_grad():
        res4 = encoder.backbone(encoder.normalize([image]).tensor)["res4"]
        pooled = roi_align(res4, [box], output_size=14, spatial_scale=1 / 16, sampling_ratio=0, aligned=True)
        expected = encoder.roi_heads["res5"](pooled).mean(dim=(2, 3))
        torch.testing.assert_close(encoder.box_features([image], [box]), expected)
        whole = encoder.roi_heads["res5"](res4).mean(dim=(2, 3))
        torch.testing.assert_close(encoder.image_features([image]), whole)
    assert expected.shape == (1, 256)


def test_fpn_image_feature_is_pooled_res5_and_encoders_run_in_eval_mode_fp32():
    encoder, _ = _encoder(soco_fpn_checkpoint(randomize=False))
    assert not encoder.training and all(p.dtype == torch.float32 for p in encoder.parameters())
    image = _image(64, 96)
    with torch.no_grad():
        res5 = encoder.backbone.bottom_up(encoder.normalize([image]).tensor)["res5"]
        torch.testing.assert_close(encoder.image_features([image]), res5.mean(dim=(2, 3)))


def test_the_shared_readout_of_fpn_weights_is_the_c4_readout_of_their_backbone():
    encoder, weights = _encoder(soco_fpn_checkpoint(randomize=False))
    c4 = build_probe_encoder(replace(architecture_from_weights(weights), kind="c4"))
    c4.load_weights(weights)  # the same stem and res2..res5; the FPN and box head are not used
    images = [_image(128, 96, seed=3), _image(128, 96, seed=4)]
    boxes = [torch.tensor([[10.0, 12, 70, 90], [0.0, 0, 40, 30]]), torch.tensor([[5.0, 8, 90, 60]])]
    with torch.no_grad():
        readouts = encoder.box_readouts(images, boxes)
        torch.testing.assert_close(readouts["own"], encoder.box_features(images, boxes))
        torch.testing.assert_close(readouts["shared"], c4.box_features(images, boxes))
        assert c4.box_readouts(images, boxes).keys() == {"own"}  # C4: its own readout is the shared one
    assert readouts["own"].shape == (3, 64) and readouts["shared"].shape == (3, 256)
