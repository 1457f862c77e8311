"""Round trips: every format converts, and DetectionCheckpointer loads the .pkl into the fine-tuning
model of the matching bundled config with every transferred tensor in place (FPN and C4 alike)."""

import re

import numpy as np
import pytest
import torch
from transfer_testing import (
    TINY_R50,
    assert_sources_in_place,
    densecl_extracted,
    densecl_raw,
    image_level_checkpoint,
    load_round_trip,
    moco_release,
    ours_oracle,
    soco_c4_checkpoint,
    soco_fpn_checkpoint,
    soco_official_oracle,
    soco_official_release,
    swav_release,
    torchvision_oracle,
    torchvision_resnet,
)

from soco.checkpoint import convert_checkpoint, detectron2_payload, save_pickle
from soco.checkpoint.io import load_checkpoint


@pytest.fixture(scope="module")
def tv():
    return torchvision_resnet(50)


RELEASES = {
    "moco": (moco_release, "mocov2_200ep", "module.encoder_q."),
    "swav": (swav_release, "swav_800ep", "module."),
    "densecl-extracted": (densecl_extracted, "densecl_200ep", ""),
    "densecl-raw": (densecl_raw, "densecl_200ep", "backbone."),
    "torchvision": (dict, "supervised", ""),
}


@pytest.mark.parametrize("arch", ["FPN", "C4"])
@pytest.mark.parametrize("release", sorted(RELEASES))
def test_image_level_release_fills_fpn_and_c4_backbones(tmp_path, tv, release, arch):
    wrap, run, prefix = RELEASES[release]
    checkpoint = wrap(tv)
    state, _, _ = load_round_trip(tmp_path, checkpoint, f"coco/mask_rcnn_R_50_{arch}_1x_{run}.yaml")
    sources = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    assert_sources_in_place(state, sources, torchvision_oracle, fpn_model=arch == "FPN")
    if prefix:  # the release's own tensors are the ones loaded (not a stale copy)
        assert torch.equal(
            sources["layer2.1.conv2.weight"],
            checkpoint.get("state_dict", checkpoint)[prefix + "layer2.1.conv2.weight"],
        )


def test_official_soco_fpn_fills_backbone_fpn_and_box_head(tmp_path, tv):
    checkpoint = soco_official_release(tv, fpn=True)
    state, weights, _ = load_round_trip(
        tmp_path, checkpoint, "coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml"
    )
    online = {
        k[len("module.") :]: v
        for k, v in checkpoint["model"].items()
        if k.startswith(("module.encoder.", "module.neck.", "module.head."))
    }
    assert len(online) == len(weights) == 318 + 48 + 26
    assert_sources_in_place(state, online, soco_official_oracle, fpn_model=True)


def test_official_soco_c4_fills_backbone_and_res5_head(tmp_path, tv):
    checkpoint = soco_official_release(tv, fpn=False)
    state, _, _ = load_round_trip(tmp_path, checkpoint, "coco/mask_rcnn_R_50_C4_1x_soco_c4_100ep.yaml")
    online = {
        k[len("module.") :]: v for k, v in checkpoint["model"].items() if k.startswith("module.encoder.")
    }
    assert_sources_in_place(state, online, soco_official_oracle, fpn_model=False)
    assert torch.isnan(state["roi_heads.res5.norm.weight"]).all(), "the extra res5.norm is new, not loaded"


OURS = {"soco-fpn": soco_fpn_checkpoint, "soco-c4": soco_c4_checkpoint, "image-level": image_level_checkpoint}


@pytest.mark.parametrize("arch", ["FPN", "C4"])
@pytest.mark.parametrize("kind", sorted(OURS))
def test_our_checkpoints_fill_fpn_and_c4_models(tmp_path, kind, arch):
    """res5 of every layout lands in backbone.bottom_up.res5 (FPN) or roi_heads.res5 (C4)."""
    checkpoint = OURS[kind]()
    run = {"soco-fpn": "soco_fpn_100ep", "soco-c4": "soco_c4_100ep", "image-level": "mocov2_200ep"}[kind]
    if arch == "C4" and kind == "soco-fpn":
        run = "soco_c4_100ep"
    if arch == "FPN" and kind == "soco-c4":
        run = "soco_fpn_100ep"
    state, _, report = load_round_trip(
        tmp_path, checkpoint, f"coco/mask_rcnn_R_50_{arch}_1x_{run}.yaml", TINY_R50
    )
    online = {k: v for k, v in checkpoint["model"].items() if k.startswith(("backbone.", "roi_heads."))}
    if arch == "C4":  # an FPN / box head has no place in a C4 model
        online = {k: v for k, v in online.items() if not re.match(r"backbone\.fpn_|roi_heads\.box_head\.", k)}
    assert_sources_in_place(state, online, ours_oracle, fpn_model=arch == "FPN")
    assert {name for _, name, _ in report.kept} >= {ours_oracle(k) for k in online}


def test_written_pkl_has_the_detectron2_layout(tmp_path):
    weights, _ = convert_checkpoint(image_level_checkpoint())
    path = tmp_path / "w.pkl"
    save_pickle(detectron2_payload(weights), str(path))
    loaded = load_checkpoint(str(path))
    assert loaded["__author__"] == "soco" and loaded["matching_heuristics"] is True
    assert set(loaded) == {"model", "__author__", "matching_heuristics"}
    assert all(type(v).__module__ == "numpy" for v in loaded["model"].values())
    assert "res5.2.conv3.norm.running_var" in loaded["model"]


def test_converted_arrays_share_no_memory_with_the_checkpoint():
    checkpoint = torchvision_resnet(18)
    weights, _ = convert_checkpoint(checkpoint)
    before = weights["stem.conv1.weight"].copy()
    checkpoint["conv1.weight"].add_(1.0)  # changed in place, as a live model's parameter is by training
    assert np.array_equal(weights["stem.conv1.weight"], before)
