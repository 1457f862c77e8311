"""SoCo meta-architectures and loss: hand-computed loss, training steps, Detectron2 names, momentum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from PIL import Image
from torch.utils.data import default_collate

import soco.modeling  # noqa: F401  (registers the meta-architectures)
from soco.config import add_soco_config
from soco.data import VIEW_GENERATOR_REGISTRY
from soco.modeling.soco_loss import matched_cosine_loss, symmetric_pair_loss

TINY = {
    "fpn": "soco/configs/tiny/SoCo_FPN.yaml",
    "star": "soco/configs/tiny/SoCo_FPN_Star.yaml",
    "c4": "soco/configs/tiny/SoCo_C4.yaml",
}


def tiny_cfg(variant: str, *opts):
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.merge_from_file(TINY[variant])
    sizes = {"fpn": [64, 64, 32], "star": [64, 64, 48, 32], "c4": [64, 64]}[variant]
    cfg.merge_from_list(["SOCO.VIEWS.SIZES", sizes, "SOCO.BOXES.LEVEL_THRESHOLDS", [16, 32, 48, 64], *opts])
    return cfg


def tiny_batch(cfg, num_images: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.RandomState(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = VIEW_GENERATOR_REGISTRY.get(cfg.PRETRAIN.DATA.VIEW_GENERATOR)(cfg)
    samples = []
    for _ in range(num_images):
        pixels = rng.randint(0, 255, size=(90, 120, 3)).astype(np.uint8)
        proposals = np.array([[5, 5, 40, 30], [50, 20, 60, 60], [0, 0, 119, 89], [20, 40, 30, 40]])
        samples.append(generator(Image.fromarray(pixels), proposals))
    return default_collate(samples)


# --- loss ------------------------------------------------------------------------------------------------


def test_matched_cosine_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    q, z = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    corr = torch.zeros(2, 3, 4)
    corr[0, 0, 1] = corr[0, 2, 1] = corr[0, 1, 3] = 1  # image 0: three matches, slot 1 of z twice
    corr[1, 2, 0] = 1  # image 1: one match
    expected_terms = []
    for n in range(2):
        total, count = 0.0, 0.0
        for i in range(3):
            for j in range(4):
                if corr[n, i, j]:
                    total += float(torch.dot(q[n, i], z[n, j]) / (q[n, i].norm() * z[n, j].norm()))
                    count += 1
        expected_terms.append(total / (count + 1e-6))
    expected = -2.0 * sum(expected_terms) / 2
    assert matched_cosine_loss(q, z, corr).item() == pytest.approx(expected, rel=1e-5)


def test_loss_of_identical_matched_vectors_is_minus_two_and_unmatched_images_count_zero():
    z = torch.randn(3, 4, 8)
    corr = torch.eye(4).repeat(3, 1, 1)
    corr[2] = 0  # no match in image 2: contributes 0 to the mean
    assert matched_cosine_loss(3.0 * z, z, corr).item() == pytest.approx(-2.0 * 2 / 3, rel=1e-5)


def test_symmetric_pair_loss_uses_the_transposed_correspondence():
    torch.manual_seed(1)
    q_a, z_a, q_b, z_b = (torch.randn(2, 3, 6) for _ in range(4))
    corr = (torch.rand(2, 3, 3) > 0.5).float()
    expected = matched_cosine_loss(q_a, z_b, corr) + matched_cosine_loss(q_b, z_a, corr.transpose(1, 2))
    assert symmetric_pair_loss(q_a, z_a, q_b, z_b, corr).item() == pytest.approx(expected.item())
    wrong = matched_cosine_loss(q_a, z_b, corr) + matched_cosine_loss(q_b, z_a, corr)
    assert symmetric_pair_loss(q_a, z_a, q_b, z_b, corr).item() != pytest.approx(wrong.item())


# --- models ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, pool_all_levels", [("fpn", True), ("fpn", False), ("star", True), ("c4", True)]
)
def test_tiny_variants_learn_on_a_repeated_batch(variant, pool_all_levels):
    torch.manual_seed(0)
    cfg = tiny_cfg(variant, "SOCO.POOL_ALL_LEVELS", pool_all_levels)
    model = build_model(cfg)
    model.train()
    batch = tiny_batch(cfg)
    expected_pairs = {"fpn": 2, "star": 3, "c4": 1}[variant]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    totals = []
    for _ in range(6):
        model.momentum_update(0.99)
        losses = model(batch)
        assert len(losses) == expected_pairs and all(k.startswith("loss_") for k in losses)
        total = sum(losses.values())
        assert torch.isfinite(total) and -4.0 * expected_pairs <= total.item() <= 4.0 * expected_pairs
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < totals[0] - 0.1, totals


def test_pooling_only_assigned_levels_gives_the_same_loss_without_head_batch_norm():
    # With no batch norm in the head and MLPs, the extra crops of POOL_ALL_LEVELS only cost compute.
    opts = ["MODEL.ROI_BOX_HEAD.NORM", "", "SOCO.HEAD.MLP_NORM", ""]
    torch.manual_seed(0)
    every_level = build_model(tiny_cfg("fpn", "SOCO.POOL_ALL_LEVELS", True, *opts))
    assigned = build_model(tiny_cfg("fpn", "SOCO.POOL_ALL_LEVELS", False, *opts))
    assigned.load_state_dict(every_level.state_dict())
    batch = tiny_batch(tiny_cfg("fpn"))
    losses_all, losses_assigned = every_level(batch), assigned(batch)
    for name, value in losses_all.items():
        assert losses_assigned[name].item() == pytest.approx(value.item(), abs=1e-4)


def test_momentum_target_starts_equal_is_frozen_and_follows_the_ema():
    model = build_model(tiny_cfg("c4"))
    online = dict(model.named_parameters())
    target = dict(model.target.named_parameters())
    assert set(target) == {k for k in online if not k.startswith(("target.", "predictor."))}
    assert all(not p.requires_grad for p in target.values())
    for name, value in target.items():
        torch.testing.assert_close(value, online[name])
    with torch.no_grad():
        for param in model.projector.parameters():
            param.add_(1.0)
    model.momentum_update(0.75)
    torch.testing.assert_close(model.target.projector[0].weight, model.projector[0].weight - 0.75)


def test_last_norm_of_every_residual_block_starts_at_zero():
    model = build_model(tiny_cfg("c4"))
    state = model.state_dict()
    assert (state["backbone.res2.0.conv2.norm.weight"] == 0).all()  # BasicBlock (R18)
    assert (state["roi_heads.res5.0.conv3.norm.weight"] == 0).all()  # BottleneckBlock
    assert (state["backbone.res2.0.conv1.norm.weight"] == 1).all()
    unchanged = build_model(tiny_cfg("c4", "SOCO.ZERO_INIT_RESIDUAL", False)).state_dict()
    assert (unchanged["roi_heads.res5.0.conv3.norm.weight"] == 1).all()


def _mask_rcnn_like(cfg_soco, zoo_config: str):
    """A Detectron2 Mask R-CNN with the same backbone / FPN / box head settings as the SoCo config."""
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.merge_from_other_cfg(cfg_soco.MODEL.RESNETS)
    cfg.MODEL.FPN.merge_from_other_cfg(cfg_soco.MODEL.FPN)
    for key in ("NAME", "NUM_CONV", "CONV_DIM", "NUM_FC", "FC_DIM", "NORM"):
        if "C4" not in zoo_config:
            cfg.MODEL.ROI_BOX_HEAD[key] = cfg_soco.MODEL.ROI_BOX_HEAD[key]
    cfg.MODEL.RESNETS.NORM = "BN"
    return build_model(cfg)


@pytest.mark.parametrize(
    "variant, zoo_config, prefixes",
    [
        ("fpn", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", ("backbone.", "roi_heads.box_head.")),
        ("c4", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml", ("backbone.", "roi_heads.res5.")),
    ],
)
def test_online_weights_load_into_detectron2_mask_rcnn_by_name(variant, zoo_config, prefixes):
    cfg = tiny_cfg(variant)
    soco_state = build_model(cfg).state_dict()
    online = {k: v for k, v in soco_state.items() if k.startswith(prefixes)}
    assert any(k.startswith("backbone.bottom_up.res2.") or k.startswith("backbone.res2.") for k in online)
    assert f"target.{next(iter(online))}" in soco_state
    mask_rcnn = _mask_rcnn_like(cfg, zoo_config)
    result = mask_rcnn.load_state_dict(online, strict=False)
    assert not result.unexpected_keys
    detector_state = mask_rcnn.state_dict()
    for key, value in online.items():
        torch.testing.assert_close(detector_state[key], value)
    missing_backbone = [k for k in result.missing_keys if k.startswith(prefixes)]
    assert not missing_backbone, missing_backbone


def test_batch_without_correspondence_is_rejected():
    model = build_model(tiny_cfg("fpn"))
    with pytest.raises(ValueError, match="correspondence"):
        model({"view1": torch.zeros(1, 3, 64, 64)})
