"""SoCo box geometry (``soco.data.soco.boxes``): proposals, levels, correspondence, selection, clipping,
padding, flips, jitter."""

from __future__ import annotations

import numpy as np
import pytest

from soco.data.soco import boxes as B


def test_proposals_to_boxes_uses_the_inclusive_extent():
    box_set = B.proposals_to_boxes(np.array([[3, 4, 10, 20]]), 50, 40)
    np.testing.assert_array_equal(box_set.boxes, [[3, 4, 14, 25]])
    assert box_set.ids.tolist() == [1]
    whole = B.proposals_to_boxes(np.zeros((0, 4)), 50, 40)
    np.testing.assert_array_equal(whole.boxes, [[0, 0, 50, 40]])
    with pytest.raises(ValueError, match="shape"):
        B.proposals_to_boxes(np.zeros((2, 5)), 50, 40)


@pytest.mark.parametrize(
    "side, level",
    [(47, 0), (48, 0), (49, 1), (96, 1), (97, 2), (192, 2), (193, 3), (224, 3)],
)
def test_level_assignment_at_the_thresholds(side, level):
    boxes = np.array([[10.0, 20.0, 10.0 + side, 20.0 + side]])
    assert B.assign_levels(boxes, [48, 96, 192, 224]).tolist() == [level]


def test_level_assignment_uses_sqrt_area_and_rejects_oversized_boxes():
    # 32 x 72: sqrt = 48 -> P2 although the long side is 72
    assert B.assign_levels(np.array([[0.0, 0.0, 32.0, 72.0]]), [48, 96, 192, 224]).tolist() == [0]
    with pytest.raises(ValueError, match="exceeds"):
        B.assign_levels(np.array([[0.0, 0.0, 225.0, 225.0]]), [48, 96, 192, 224])


def test_a_box_filling_the_view_is_assigned_despite_float_noise():
    window = B.CropWindow(left=0.0, top=0.0, width=187.0, height=187.0)  # 96 / 187 * 187 > 96 in floats
    whole = B.window_to_view(np.array([[0.0, 0.0, 187.0, 187.0]]), window, 96)
    assert B.assign_levels(whole, [20, 40, 80, 96]).tolist() == [3]
    assert B.assign_levels(np.array([[0.0, 0.0, 96.0 + 1e-12, 96.0]]), [20, 40, 80, 96]).tolist() == [3]


def test_correspondence_matrix_is_level_major_and_counts_duplicates():
    ids_a, levels_a = np.array([5, 7, 5, 9]), np.array([0, 3, 1, 2])
    ids_b, levels_b = np.array([5, 5, 8, 7]), np.array([2, 2, 0, 1])
    slots_a = B.level_slot_ids(ids_a, levels_a, 4, -1)
    slots_b = B.level_slot_ids(ids_b, levels_b, 4, -2)
    assert slots_a.tolist() == [5, -1, -1, -1, -1, -1, 5, -1, -1, -1, -1, 9, -1, 7, -1, -1]
    corr = B.correspondence_matrix(slots_a, slots_b)
    expected = np.zeros((16, 16), dtype=np.float32)
    for i in (0, 6):  # box 0 (P2) and box 2 (P3) of a hold id 5
        expected[i, [8, 9]] = 1  # boxes 0 and 1 of b hold id 5 on P4
    expected[13, 7] = 1  # id 7: box 1 of a on P5, box 3 of b on P3
    np.testing.assert_array_equal(corr, expected)


def test_selection_retries_with_a_halving_threshold():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 12.0, 12.0], [50.0, 50.0, 60.0, 60.0]])
    anchor = B.CropWindow(0, 0, 100, 100)
    near, far = B.CropWindow(0, 0, 20, 20), B.CropWindow(70, 70, 30, 30)
    # K = 4 needs 2 common boxes on the first try, 1 afterwards: [far] fails, [(50, 50) window] succeeds
    draws = iter([[far], [B.CropWindow(40, 40, 30, 30)], [near]])
    crops, selections = B.select_with_retries(
        boxes, anchor, lambda: next(draws), 4, 5, np.random.RandomState(0)
    )
    assert crops == [B.CropWindow(40, 40, 30, 30)] and selections[0].tolist() == [2]
    # every try fails: the last draw is kept with its (empty) selection
    draws = iter([[far]] * 3)
    crops, selections = B.select_with_retries(
        boxes, anchor, lambda: next(draws), 4, 3, np.random.RandomState(0)
    )
    assert crops == [far] and len(selections[0]) == 0
    # more candidates than K: K distinct ones
    many = np.array([[i, 0.0, i + 5.0, 5.0] for i in range(10)])
    _, (chosen,) = B.select_with_retries(many, anchor, lambda: [anchor], 4, 1, np.random.RandomState(0))
    assert len(set(chosen.tolist())) == 4


def test_clip_drops_outside_boxes_and_falls_back_to_the_whole_window():
    window = B.CropWindow(10, 20, 30, 40)
    box_set = B.BoxSet(np.array([[0.0, 0.0, 15.0, 30.0], [50.0, 0.0, 60.0, 10.0]]), np.array([3, 4]))
    clipped = B.clip_to_window(box_set, window)
    np.testing.assert_array_equal(clipped.boxes, [[0, 0, 5, 10]])
    assert clipped.ids.tolist() == [3]
    fallback = B.clip_to_window(B.BoxSet(box_set.boxes[1:], box_set.ids[1:]), window)
    np.testing.assert_array_equal(fallback.boxes, [[0, 0, 30, 40]])
    assert fallback.ids.tolist() == [B.FALLBACK_ID]


def test_padding_draws_only_common_ids():
    a = B.BoxSet(np.arange(12.0).reshape(3, 4), np.array([1, 2, 3]))
    b = B.BoxSet(np.arange(8.0).reshape(2, 4), np.array([2, 5]))
    padded_a, padded_b = B.pad_with_common(a, b, 6, np.random.RandomState(0))
    assert padded_a.ids[:3].tolist() == [1, 2, 3] and set(padded_a.ids[3:].tolist()) == {2}
    assert padded_b.ids[:2].tolist() == [2, 5] and set(padded_b.ids[2:].tolist()) == {2}
    np.testing.assert_array_equal(padded_a.boxes[3:], np.tile(a.boxes[1], (3, 1)))
    # no common id: each set repeats its own boxes
    lone_a, _ = B.pad_with_common(a, B.BoxSet(b.boxes[1:], b.ids[1:]), 4, np.random.RandomState(0))
    assert len(lone_a.ids) == 4 and set(lone_a.ids.tolist()) <= {1, 2, 3}


def test_flip_and_resize_to_view():
    boxes = np.array([[2.0, 3.0, 10.0, 7.0]])
    np.testing.assert_array_equal(B.flip_boxes(boxes, 20), [[10, 3, 18, 7]])
    np.testing.assert_array_equal(B.flip_boxes(B.flip_boxes(boxes, 20), 20), boxes)
    np.testing.assert_array_equal(B.window_to_view(boxes, B.CropWindow(5, 5, 40, 20), 80), [[4, 12, 20, 28]])


def test_jitter_changes_boxes_within_the_ratio():
    boxes = np.tile([[100.0, 100.0, 200.0, 150.0]], (200, 1))
    np.testing.assert_array_equal(B.jitter_boxes(boxes, 0.0, 0.1, np.random.RandomState(0)), boxes)
    jittered = B.jitter_boxes(boxes, 0.5, 0.1, np.random.RandomState(0))
    changed = (jittered != boxes).any(axis=1)
    assert 60 < changed.sum() < 140
    assert np.abs(jittered[:, 0] - 100).max() <= 10 and np.abs(jittered[:, 1] - 100).max() <= 5
    widths = jittered[:, 2] - jittered[:, 0]
    assert widths.min() >= 90 and widths.max() <= 110
