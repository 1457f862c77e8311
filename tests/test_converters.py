"""The converter scripts: what they write, what they print, and how they fail."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from scripts_testing import load_script
from transfer_testing import (
    CONFIGS,
    REPO,
    TINY_R50,
    image_level_checkpoint,
    moco_release,
    soco_official_release,
    torchvision_resnet,
)

from soco.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def moco_file(tmp_path_factory):
    tv = torchvision_resnet(50)
    path = tmp_path_factory.mktemp("moco") / "moco_v2_200ep_pretrain.pth.tar"
    torch.save(moco_release(tv), path)
    return path, tv


def test_convert_to_detectron2_prints_summary_and_writes_pkl(moco_file, tmp_path, capsys):
    source, tv = moco_file
    out = tmp_path / "model_final_d2.pkl"
    config = CONFIGS / "coco/mask_rcnn_R_50_C4_1x_mocov2_200ep.yaml"
    code = load_script("converters/convert_to_detectron2.py").main(
        [str(source), str(out), "--verify-config", str(config)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "format 'moco' (detected)" in printed
    assert "kept 318 tensors (backbone 318); 318 renamed" in printed
    assert "momentum key encoder" in printed and "negative-key queue" in printed
    assert "verified against" in printed and "MISSING" not in printed
    model = load_checkpoint(str(out))["model"]
    assert torch.equal(
        torch.from_numpy(model["res4.5.conv3.norm.running_mean"]), tv["layer3.5.bn3.running_mean"]
    )


def test_convert_to_detectron2_refuses_weights_that_do_not_fit(tmp_path, capsys):
    source = tmp_path / "tiny.pth"
    torch.save(image_level_checkpoint(), source)
    out = tmp_path / "tiny.pkl"
    config = str(CONFIGS / "coco/mask_rcnn_R_50_FPN_1x_mocov2_200ep.yaml")
    code = load_script("converters/convert_to_detectron2.py").main(
        [str(source), str(out), "--verify-config", config]
    )
    assert code == 1 and not out.exists()
    assert "SHAPE MISMATCH" in capsys.readouterr().out
    code = load_script("converters/convert_to_detectron2.py").main(
        [str(source), str(out), "--verify-config", config, "--verify-opts", *TINY_R50]
    )
    assert code == 0 and out.exists()


def test_convert_to_torchvision_loads_into_torchvision_resnet(tmp_path, capsys):
    source = tmp_path / "ckpt_epoch_400.pth"
    tv = torchvision_resnet(50, seed=5)
    torch.save(soco_official_release(tv, fpn=True), source)
    out = tmp_path / "soco_r50_tv.pth"
    assert load_script("converters/convert_to_torchvision.py").main([str(source), str(out)]) == 0
    assert "fpn not requested (keep=backbone)" in capsys.readouterr().out
    written = torch.load(out, weights_only=True)
    assert written["author"] == "soco"
    model = torchvision.models.resnet50()
    result = model.load_state_dict(written["state_dict"], strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, tv[key]), key


def test_extract_backbone_weights_loads_into_a_detectron2_resnet(tmp_path):
    source = tmp_path / "model_final.pth"
    checkpoint = image_level_checkpoint()
    torch.save(checkpoint, source)
    out = tmp_path / "backbone.pth"
    assert load_script("converters/extract_backbone_weights.py").main([str(source), str(out)]) == 0
    written = torch.load(out, weights_only=True)
    assert written["matching_heuristics"] is True
    cfg = get_cfg()
    cfg.merge_from_list(TINY_R50 + ["MODEL.RESNETS.NORM", "SyncBN", "MODEL.RESNETS.OUT_FEATURES", "['res5']"])
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    backbone.load_state_dict(written["model"])  # strict: names and shapes are exactly the ResNet's
    assert torch.equal(backbone.res3[1].conv2.weight, checkpoint["model"]["backbone.res3.1.conv2.weight"])


def test_publish_model_script(tmp_path, capsys):
    source = tmp_path / "model_final.pth"
    torch.save(image_level_checkpoint(), source)
    assert load_script("converters/publish_model.py").main([str(source), str(tmp_path / "mocov2.pth")]) == 0
    printed = capsys.readouterr().out
    path = re.search(r"published (\S+)", printed)[1]
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert path.endswith(f"mocov2-{digest[:8]}.pth")


def test_bad_input_is_a_one_line_error_when_run_as_a_script(tmp_path):
    source = tmp_path / "weird.pth"
    torch.save({"weights": {"encoder.conv1.weight": torch.zeros(1)}}, source)
    script = REPO / "converters" / "convert_to_detectron2.py"
    result = subprocess.run(
        [sys.executable, str(script), str(source), str(tmp_path / "out.pkl")], capture_output=True, text=True
    )
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "unknown checkpoint layout" in last_line
    assert not (tmp_path / "out.pkl").exists()


def test_output_must_be_a_pkl(moco_file, tmp_path):
    with pytest.raises(SystemExit):
        load_script("converters/convert_to_detectron2.py").main([str(moco_file[0]), str(tmp_path / "x.pth")])
