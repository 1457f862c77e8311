"""Format registry: auto-detection of every release, keep / drop rules, errors naming the key."""

import pytest
import torch
from transfer_testing import (
    densecl_extracted,
    densecl_raw,
    image_level_checkpoint,
    moco_release,
    soco_c4_checkpoint,
    soco_fpn_checkpoint,
    soco_official_release,
    swav_release,
    torchvision_resnet,
)

from soco.checkpoint import SOURCE_FORMATS, convert_checkpoint, detect_format


@pytest.fixture(scope="module")
def tv():
    return torchvision_resnet(50)


def _fixtures(tv):
    return {
        "moco": moco_release(tv),
        "swav": swav_release(tv),
        "densecl-extracted": densecl_extracted(tv),
        "densecl-raw": densecl_raw(tv),
        "torchvision": dict(tv),
        "torchvision-wrapped": {"state_dict": {k: v for k, v in tv.items() if not k.startswith("fc.")}},
        "soco-official-fpn": soco_official_release(tv, fpn=True),
        "soco-official-c4": soco_official_release(tv, fpn=False),
        "soco-fpn": soco_fpn_checkpoint(),
        "soco-c4": soco_c4_checkpoint(),
        "soco-image-level": image_level_checkpoint(),
    }


# fixture -> (detected format, kept tensors per part, {drop reason substring: count})
EXPECTED = {
    "moco": ("moco", {"backbone": 318}, {"projection MLP": 4, "momentum key encoder": 322, "queue": 2}),
    "swav": ("swav", {"backbone": 318}, {"projection head": 4, "prototypes": 1}),
    "densecl-extracted": ("densecl", {"backbone": 318}, {}),
    "densecl-raw": (
        "densecl",
        {"backbone": 318},
        {"alias of backbone": 318, "query neck": 16, "momentum": 326, "queue": 4},
    ),
    "torchvision": ("torchvision", {"backbone": 318}, {"classifier": 2}),
    "torchvision-wrapped": ("torchvision", {"backbone": 318}, {}),
    "soco-official-fpn": (
        "soco-official",
        {"backbone": 318, "fpn": 48, "box_head": 26},
        {"momentum target": 318 + 48 + 26 + 4, "projector / predictor": 8},
    ),
    "soco-official-c4": ("soco-official", {"backbone": 318}, {"momentum target": 318 + 4, "queue": 1}),
    "soco-fpn": (
        "soco",
        {"backbone": 318, "fpn": 48, "box_head": 26},
        {"target": 318 + 48 + 26 + 4, "pretraining head": 8},
    ),
    "soco-c4": ("soco", {"backbone": 318}, {"target": 318 + 4, "pretraining head": 8}),
    "soco-image-level": ("soco", {"backbone": 318}, {"target": 318 + 8, "pretraining head": 8, "queue": 6}),
}


def test_every_release_is_detected_and_every_tensor_accounted_for(tv):
    for fixture, checkpoint in _fixtures(tv).items():
        fmt, kept, drops = EXPECTED[fixture]
        assert detect_format(checkpoint).name == fmt, fixture
        weights, report = convert_checkpoint(checkpoint)
        assert report.format_name == fmt and report.detected
        per_part = {}
        for _, _, part in report.kept:
            per_part[part] = per_part.get(part, 0) + 1
        assert per_part == kept, fixture
        for reason, count in drops.items():
            assert sum(reason in r for _, r in report.dropped) == count, (fixture, reason)
        assert len(report.kept) + len(report.dropped) == len(SOURCE_FORMATS[fmt].unwrap(checkpoint)), fixture
        assert len(weights) == len(report.kept)


def test_summary_names_format_parts_and_drop_reasons(tv):
    _, report = convert_checkpoint(soco_official_release(tv, fpn=True), source="ckpt_epoch_100.pth")
    text = report.summary()
    assert "ckpt_epoch_100.pth: format 'soco-official' (detected)" in text
    assert "ResNet-50" in text and "FPN P2-P5 (256 ch)" in text and "box head 4conv1fc" in text
    assert "module.encoder.conv1.weight -> stem.conv1.weight" in text
    assert "momentum target network: module.encoder_k." in text
    assert len(report.summary(verbose=True).splitlines()) > len(report.kept)


def test_keep_backbone_drops_fpn_and_head_with_a_reason():
    weights, report = convert_checkpoint(soco_fpn_checkpoint(), keep="backbone")
    assert not any(k.startswith(("fpn_", "box_head.")) for k in weights)
    assert sum("fpn not requested" in r for _, r in report.dropped) == 48
    assert sum("box_head not requested" in r for _, r in report.dropped) == 26


def test_unknown_layout_is_an_error():
    with pytest.raises(ValueError, match="unknown checkpoint layout.*known formats"):
        convert_checkpoint({"weights": {"encoder.conv1.weight": torch.zeros(1)}}, source="x.pth")


def test_unknown_key_in_a_known_layout_is_an_error_naming_it(tv):
    checkpoint = moco_release(tv)
    checkpoint["state_dict"]["module.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(
        ValueError, match=r"key 'module\.extra_head\.weight' is not part of the 'moco' layout"
    ):
        convert_checkpoint(checkpoint)
    ours = soco_fpn_checkpoint()
    ours["model"]["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"'roi_heads\.box_predictor\.cls_score\.weight'"):
        convert_checkpoint(ours)
    swav = swav_release(tv)
    swav["module.layer1.0.bn4.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"key 'module\.layer1\.0\.bn4\.weight'.*torchvision ResNet"):
        convert_checkpoint(swav)


def test_missing_tensor_in_a_release_is_an_error_naming_it(tv):
    checkpoint = moco_release(tv)
    del checkpoint["state_dict"]["module.encoder_q.layer3.2.bn1.running_var"]
    with pytest.raises(ValueError, match=r"'res4\.2\.conv1\.norm\.running_var'"):
        convert_checkpoint(checkpoint)


def test_explicit_format_must_fit(tv):
    with pytest.raises(ValueError, match="does not have the layout of format 'swav'"):
        convert_checkpoint(moco_release(tv), format_name="swav")
    _, report = convert_checkpoint(moco_release(tv), format_name="moco")
    assert not report.detected


def test_non_tensor_value_is_an_error_naming_it(tv):
    state = dict(tv)
    state["layer1.0.conv1.weight"] = [1, 2, 3]
    with pytest.raises(TypeError, match=r"'layer1\.0\.conv1\.weight' holds a list"):
        convert_checkpoint(state)
