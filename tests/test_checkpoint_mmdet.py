"""Export to MMDetection 3.x: key names, the C4 layout, and every exported key and shape checked against
the state dict of the real mmdet 3.3 Mask R-CNN built from mmdet_configs/ (in a subprocess, see
mmdet_testing.py), loaded with mmengine's own checkpoint loader."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone
from detectron2.modeling.roi_heads import FastRCNNConvFCHead
from mmdet_testing import SITE, missing_install_message
from scripts_testing import load_script
from transfer_testing import (
    REPO,
    densecl_extracted,
    densecl_raw,
    moco_release,
    randomized,
    soco_fpn_checkpoint,
    soco_official_release,
    swav_release,
    torchvision_resnet,
)

from soco.checkpoint import convert_checkpoint, load_checkpoint
from soco.checkpoint.mmdet import MMDET_PARTS, mmdet_name, mmdet_state_dict, part_counts
from soco.modeling.soco import build_res5_head
from soco.utils.cli import run

CONFIGS = {
    "fpn": str(REPO / "mmdet_configs" / "mask-rcnn_r50_fpn_soco_ms-1x_coco.py"),
    "c4": str(REPO / "mmdet_configs" / "mask-rcnn_r50-c4_soco_ms-1x_coco.py"),
}

SCRIPT = "converters/convert_to_mmdetection.py"


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        ("stem.conv1.norm.running_var", "fpn", "backbone.bn1.running_var"),
        ("res5.2.shortcut.norm.bias", "fpn", "backbone.layer4.2.downsample.1.bias"),
        ("res5.0.conv2.weight", "c4", "roi_head.shared_head.layer4.0.conv2.weight"),
        ("res4.5.conv3.norm.weight", "c4", "backbone.layer3.5.bn3.weight"),
        ("fpn_lateral2.weight", "fpn", "neck.lateral_convs.0.conv.weight"),
        ("fpn_output5.norm.num_batches_tracked", "fpn", "neck.fpn_convs.3.bn.num_batches_tracked"),
        ("fpn_lateral3.bias", "fpn", "neck.lateral_convs.1.conv.bias"),
        ("box_head.conv4.norm.running_mean", "fpn", "roi_head.bbox_head.shared_convs.3.bn.running_mean"),
        ("box_head.conv1.weight", "fpn", "roi_head.bbox_head.shared_convs.0.conv.weight"),
        ("box_head.fc1.bias", "fpn", "roi_head.bbox_head.shared_fcs.0.bias"),
    ],
)
def test_mmdet_names(name, target, expected):
    assert mmdet_name(name, target) == expected


def test_what_has_no_place_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"'fpn_lateral2.weight' is an FPN weight.*--keep backbone"):
        mmdet_name("fpn_lateral2.weight", "c4")
    with pytest.raises(ValueError, match=r"'box_head.fc1.weight' is a box-head weight"):
        mmdet_name("box_head.fc1.weight", "c4")
    with pytest.raises(ValueError, match=r"no MMDetection name for 'res2.0.conv4.weight'"):
        mmdet_name("res2.0.conv4.weight", "fpn")
    with pytest.raises(ValueError, match="target must be one of"):
        mmdet_name("stem.conv1.weight", "retinanet")


def test_converter_script_writes_state_dict_and_meta(tmp_path, capsys):
    source = tmp_path / "model_final.pth"
    torch.save(soco_fpn_checkpoint(), source)
    out = tmp_path / "soco_fpn_mmdet.pth"
    assert run(load_script(SCRIPT).main, [str(source), str(out)]) == 0
    printed = capsys.readouterr().out
    written = load_checkpoint(str(out))
    assert set(written) == {"state_dict", "meta"}
    assert written["meta"] == {
        "author": "soco",
        "source": str(source),
        "source_format": "soco",
        "target": "fpn",
    }
    counts = part_counts(written["state_dict"])
    assert set(counts) == {"backbone", "neck", "bbox_head"}
    assert (
        f"MMDetection (fpn): {len(written['state_dict'])} tensors (backbone {counts['backbone']}" in printed
    )
    assert run(load_script(SCRIPT).main, [str(source), str(tmp_path / "c4.pth"), "--target", "c4"]) == 2
    assert "is an FPN weight" in capsys.readouterr().err and not (tmp_path / "c4.pth").exists()


# --- against the real MMDetection model -------------------------------------------------------------


def _full_size_cfg(extra: list[str]):
    """Detectron2 R50 as soco pretrains it (SyncBN, torchvision-style stride in the 3x3 conv)."""
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RESNETS.NORM", "SyncBN", "MODEL.RESNETS.STRIDE_IN_1X1", "False", *extra])
    return cfg


def _ours(fpn: bool) -> dict:
    """Our SoCo FPN / C4 pretraining checkpoint at full R50 size (target and MLP heads left out: the
    layouts with them are covered by the tiny checkpoints of transfer_testing)."""
    if fpn:
        stages = "['res2','res3','res4','res5']"
        cfg = _full_size_cfg(
            [
                "MODEL.RESNETS.OUT_FEATURES",
                stages,
                "MODEL.FPN.IN_FEATURES",
                stages,
                "MODEL.FPN.NORM",
                "SyncBN",
            ]
        )
        cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NUM_CONV", "4", "MODEL.ROI_BOX_HEAD.NUM_FC", "1"])
        cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NORM", "SyncBN"])
        parts = {
            "backbone.": build_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)),
            "roi_heads.box_head.": FastRCNNConvFCHead(cfg, ShapeSpec(channels=256, height=7, width=7)),
        }
    else:
        cfg = _full_size_cfg(["MODEL.RESNETS.OUT_FEATURES", "['res4']"])
        parts = {
            "backbone.": build_resnet_backbone(cfg, ShapeSpec(channels=3)),
            "roi_heads.res5.": build_res5_head(cfg)[0],
        }
    state = {prefix + k: v for prefix, module in parts.items() for k, v in module.state_dict().items()}
    return {"model": randomized(state, seed=7 if fpn else 8), "iteration": 9}


def _variants() -> dict[str, tuple[dict, str]]:
    """Every release layout at full size, with the mmdet target it is exported for."""
    tv = torchvision_resnet(50)
    return {
        "SoCo FPN (ours)": (_ours(fpn=True), "fpn"),
        "SoCo FPN* (official release)": (soco_official_release(tv, fpn=True), "fpn"),
        "SoCo C4 (ours)": (_ours(fpn=False), "c4"),
        "SoCo C4 (official release)": (soco_official_release(tv, fpn=False), "c4"),
        "MoCo v2": (moco_release(tv), "fpn"),
        "DenseCL (release)": (densecl_extracted(tv), "fpn"),
        "DenseCL (epoch_N.pth)": (densecl_raw(tv), "c4"),
        "SwAV": (swav_release(tv), "fpn"),
    }


@pytest.fixture(scope="module")
def mmdet_model_shapes(tmp_path_factory):
    """``(shapes, differ, exported)``: the mmdet models' ``{key: shape}``, the keys of two exported files
    that mmengine's loader did not fill with the file's values, and the exports of every variant."""
    problem = missing_install_message()
    if problem:
        pytest.fail(problem)
    folder = tmp_path_factory.mktemp("mmdet")
    exported, load = {}, []
    for name, (checkpoint, target) in _variants().items():
        weights, _ = convert_checkpoint(checkpoint, source=name)
        exported[name] = (mmdet_state_dict(weights, target), target)
        if "(ours)" in name:  # through the converter script and mmengine's load_checkpoint
            source, output = folder / f"{target}.pth", folder / f"{target}_mmdet.pth"
            torch.save(checkpoint, source)
            assert run(load_script(SCRIPT).main, [str(source), str(output), "--target", target]) == 0
            load.append([target, str(output)])
    request = json.dumps({"configs": CONFIGS, "load": load})
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "mmdet_testing.py"), str(SITE), request],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return out["shapes"], out["differ"], exported


@pytest.mark.slow
def test_every_export_fits_the_real_mmdet_model(mmdet_model_shapes):
    shapes, differ, exported = mmdet_model_shapes
    assert differ and all(keys == [] for keys in differ.values()), differ
    counts = {}
    for name, (state, target) in exported.items():
        model = shapes[target]
        unexpected = sorted(set(state) - set(model))
        assert not unexpected, f"{name}: {len(unexpected)} keys not in the mmdet model, e.g. {unexpected[:5]}"
        wrong = [(k, list(v.shape), model[k]) for k, v in state.items() if list(np.shape(v)) != model[k]]
        assert not wrong, f"{name}: shape mismatches {wrong[:5]}"
        parts = part_counts(state)
        for part in parts:
            prefix = MMDET_PARTS[part]
            missing = sorted(k for k in model if k.startswith(prefix) and k not in state)
            assert not missing, f"{name}: {part} keys the export leaves unset: {missing[:5]}"
        counts[name] = (target, len(state), parts)
    print("\nexported keys per variant:")
    for name, (target, total, parts) in counts.items():
        print(f"  {name:32s} {target:3s} {total:4d}  {parts}")
    assert counts["SoCo FPN (ours)"][2] == counts["SoCo FPN* (official release)"][2]
    assert set(counts["SoCo C4 (ours)"][2]) == {"backbone", "shared_head"}
    assert set(counts["MoCo v2"][2]) == {"backbone"}
    # "backbone" and "shared_head" split one ResNet: a C4 export holds the tensors of an FPN export's backbone
    assert sum(counts["SoCo C4 (ours)"][2].values()) == counts["MoCo v2"][1]
