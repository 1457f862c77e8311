"""A SoCo branch (``soco.modeling.soco_branch``): view -> backbone -> RoIAlign -> RoI head -> projector."""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling import build_model
from soco_testing import tiny_batch, tiny_cfg

from soco.data import batch_keys as keys
from soco.modeling.soco_branch import SoCoBranch, pad_to_divisibility
from soco.modeling.soco_rois import pool_boxes


def test_pad_to_divisibility_pads_bottom_right_with_zeros():
    images = torch.ones(2, 3, 112, 96)
    padded = pad_to_divisibility(images, 32)
    assert padded.shape == (2, 3, 128, 96)
    assert (padded[..., :112, :] == 1).all() and (padded[..., 112:, :] == 0).all()
    assert pad_to_divisibility(images, 1) is images and pad_to_divisibility(images, 16) is images


@pytest.mark.parametrize("pool_all_levels", [True, False])
def test_branch_is_the_chain_of_its_steps(pool_all_levels):
    cfg = tiny_cfg("fpn", "SOCO.POOL_ALL_LEVELS", pool_all_levels)
    branch = build_model(cfg).online_branch().eval()
    assert isinstance(branch, SoCoBranch)
    batch = tiny_batch(cfg)
    view, names = batch[keys.view_key(1)], ["1_2", "1_3"]
    boxes = [batch[keys.boxes_key(name)] for name in names]
    levels = [batch[keys.levels_key(name)] for name in names]
    embedded = branch(view, boxes, levels)
    slots = 4 * 4 if pool_all_levels else 4  # P * K or K
    assert [e.shape for e in embedded] == [(4, slots, cfg.SOCO.HEAD.MLP_OUT_DIM)] * 2
    features = branch.features(view)
    assert [f.shape[1:] for f in features] == [(32, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2)]  # P2..P5
    for box_set, level_set, output in zip(boxes, levels, embedded, strict=True):
        pooled = pool_boxes(features, box_set, level_set, branch.pooler, pool_all_levels)
        expected = branch.projector(branch.roi_heads(pooled.flatten(0, 1))).reshape(output.shape)
        torch.testing.assert_close(output, expected)


def test_embed_box_sets_runs_the_backbone_once_per_view():
    cfg = tiny_cfg("star")
    model = build_model(cfg)
    batch = tiny_batch(cfg, num_images=2)
    calls = []
    model.target.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[-1]))
    names = keys.box_sets(keys.pairs(batch))
    assert names == ["1_2", "1_3", "2", "3", "4"]
    with torch.no_grad():
        embedded = model.target.embed_box_sets(batch, names)
    assert calls == [64, 64, 64, 32]  # V1 (two box sets), V2, V3 48 px padded to 64, V4
    assert sorted(embedded) == names and all(e.shape == (2, 16, 32) for e in embedded.values())
