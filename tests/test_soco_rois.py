"""SoCo's RoI steps (``soco.modeling.soco_rois``): RoIAlign of a box set, slot levels, head batches, the
assigned-level correspondence; each checked alone on small tensors."""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling.poolers import ROIPooler
from torch import nn
from torchvision.ops import roi_align

from soco.modeling import soco_rois
from soco.modeling.soco_rois import (
    assigned_level_correspondence,
    check_head_batching,
    head_batches,
    pool_boxes,
    run_in_batches,
    slot_levels,
)

SCALES = (1 / 4, 1 / 8)


def _pyramid(num_images: int = 2, channels: int = 3, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(num_images, channels, 32 // s, 32 // s, generator=generator) for s in (1, 2)]


def _pooler() -> ROIPooler:
    return ROIPooler(output_size=2, scales=SCALES, sampling_ratio=0, pooler_type="ROIAlignV2")


BOXES = torch.tensor(
    [
        [[0.0, 0.0, 40.0, 40.0], [10.0, 20.0, 90.0, 70.0], [64.0, 64.0, 128.0, 128.0]],
        [[5.0, 5.0, 30.0, 60.0], [0.0, 0.0, 128.0, 128.0], [50.0, 10.0, 70.0, 30.0]],
    ]
)  # (N=2, K=3, 4) in 128 px views
LEVELS = torch.tensor([[0, 1, 1], [0, 1, 0]])


def _expected_crop(features: list[torch.Tensor], image: int, box: torch.Tensor, level: int) -> torch.Tensor:
    rois = torch.cat([torch.tensor([float(image)]), box])[None]
    return roi_align(features[level], rois, 2, SCALES[level], sampling_ratio=0, aligned=True)[0]


def test_pool_boxes_on_every_level_fills_level_major_slots():
    features = _pyramid()
    pooled = pool_boxes(features, BOXES, LEVELS, _pooler(), all_levels=True)
    assert pooled.shape == (2, 2 * 3, 3, 2, 2)  # (N, P*K, C, S, S)
    for image in range(2):
        for level in range(2):
            for box in range(3):
                expected = _expected_crop(features, image, BOXES[image, box], level)
                torch.testing.assert_close(pooled[image, level * 3 + box], expected)


def test_pool_boxes_on_the_assigned_level_only():
    features = _pyramid()
    pooled = pool_boxes(features, BOXES, LEVELS, _pooler(), all_levels=False)
    assert pooled.shape == (2, 3, 3, 2, 2)  # (N, K, C, S, S)
    for image in range(2):
        for box in range(3):
            expected = _expected_crop(features, image, BOXES[image, box], int(LEVELS[image, box]))
            torch.testing.assert_close(pooled[image, box], expected)


def test_pool_boxes_runs_in_fp32_under_autocast():
    features = [f.bfloat16() for f in _pyramid()]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        pooled = pool_boxes(features, BOXES, LEVELS, _pooler(), all_levels=True)
    assert pooled.dtype == torch.float32


def test_slot_levels_follow_the_slot_layout():
    assert slot_levels(LEVELS, 2, all_levels=False) is LEVELS
    assert slot_levels(LEVELS, 2, all_levels=True).tolist() == [[0, 0, 0, 1, 1, 1]] * 2


def test_head_batches_split_the_slots_by_level_and_skip_empty_levels():
    assert head_batches(LEVELS, 4, "per_box_set") is None
    batches = head_batches(LEVELS, 4, "per_level")  # rows of LEVELS flattened: levels 0 1 1 0 1 0
    assert [rows.tolist() for rows in batches] == [[0, 3, 5], [1, 2, 4]]  # levels 2 and 3 hold no slot
    every_level = head_batches(slot_levels(LEVELS, 2, all_levels=True), 2, "per_level")
    assert [rows.tolist() for rows in every_level] == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11]]


@pytest.mark.parametrize(
    "levels, expected",
    [
        ([[1, 0, 0, 2, 2]], [[1, 2, 0], [3, 4]]),  # P3 alone joins P2 before it
        ([[0, 3, 0, 2, 2]], [[0, 2], [3, 4, 1]]),  # the last level joins the previous one
        ([[1, 0, 3, 2, 2]], [[1, 0], [3, 4, 2]]),  # two single-box levels in a row form one batch
        ([[0, 1, 1, 2, 2]], [[0, 1, 2], [3, 4]]),  # P2 alone: P3 joins it
        ([[0, 1, 2, 3, 0]], [[0, 4, 1, 2, 3]]),
    ],
)
def test_a_level_holding_a_single_box_joins_a_neighbouring_batch(levels, expected):
    batches = head_batches(torch.tensor(levels), 4, "per_level")
    assert [rows.tolist() for rows in batches] == expected
    assert sorted(torch.cat(batches).tolist()) == list(range(len(levels[0])))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)


def test_run_in_batches_normalises_each_batch_apart_and_keeps_the_row_order():
    torch.manual_seed(0)
    inputs = torch.randn(7, 4) + torch.arange(7.0)[:, None]
    batches = [torch.tensor([0, 3, 5]), torch.tensor([1, 2, 4, 6])]
    norm = nn.BatchNorm1d(4, affine=False).train()
    out = run_in_batches([nn.Identity(), norm], inputs, batches)
    for rows in batches:
        torch.testing.assert_close(out[rows], _normalise(inputs[rows]))
    torch.testing.assert_close(run_in_batches([norm], inputs, None), _normalise(inputs))
    linear = nn.Linear(4, 2)  # without batch norm the batching changes nothing
    torch.testing.assert_close(run_in_batches([linear], inputs, batches), linear(inputs))


def test_assigned_level_correspondence_keeps_the_assigned_slots():
    torch.manual_seed(0)
    num_levels, k = 4, 3
    correspondence = torch.rand(2, num_levels * k, num_levels * k)
    levels_a = torch.tensor([[0, 3, 1], [2, 2, 0]])
    levels_b = torch.tensor([[1, 1, 0], [3, 0, 2]])
    reduced = assigned_level_correspondence(correspondence, levels_a, levels_b)
    assert reduced.shape == (2, k, k)
    for n in range(2):
        for i in range(k):
            for j in range(k):
                row, col = levels_a[n, i] * k + i, levels_b[n, j] * k + j
                assert reduced[n, i, j] == correspondence[n, row, col]


def test_check_head_batching_rejects_unknown_values_and_syncbn_across_processes(monkeypatch):
    with pytest.raises(ValueError, match="SOCO.HEAD_BATCHING='per_image'"):
        check_head_batching("per_image", True, [])
    synced = [nn.Sequential(nn.Linear(2, 2), nn.SyncBatchNorm(2))]
    check_head_batching("per_level", False, synced)  # one process: nothing to pair up
    monkeypatch.setattr(soco_rois.comm, "get_world_size", lambda: 2)
    with pytest.raises(ValueError, match="SyncBN"):
        check_head_batching("per_level", False, synced)
    check_head_batching("per_level", True, synced)  # every level holds every box: same calls everywhere
    check_head_batching("per_box_set", False, synced)
    check_head_batching("per_level", False, [nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))])
