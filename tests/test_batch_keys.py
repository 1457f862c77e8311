"""Batch-key names (``soco.data.batch_keys``): every name is written and read back by the same module."""

from __future__ import annotations

import pytest

from soco.data import batch_keys as keys


def test_soco_names_round_trip():
    anchor, crop = keys.box_set(1, 2), keys.box_set(2)
    assert (anchor, crop) == ("1_2", "2")
    assert keys.view_of(anchor) == 1 and keys.view_of(crop) == 2 and keys.view_of("12_3") == 12
    batch = {
        keys.view_key(1): 0,
        keys.view_key(12): 0,
        "views": 0,  # MoCo's two-view entry is not a numbered view
        keys.boxes_key(anchor): 0,
        keys.levels_key(anchor): 0,
        keys.correspondence_key(anchor, crop): 0,
        keys.correspondence_key("1_3", "3"): 0,
        keys.correspondence_key("1_2", "4"): 0,
    }
    assert set(batch) >= {"view1", "boxes1_2", "levels1_2", "correspondence1_2_vs_2"}
    assert keys.views(batch) == [1, 12]
    assert keys.pairs(batch) == [("1_2", "2"), ("1_2", "4"), ("1_3", "3")]
    assert keys.box_sets(keys.pairs(batch)) == ["1_2", "1_3", "2", "3", "4"]  # 1_2 once although in 2 pairs
    assert keys.loss_key(anchor, crop) == "loss_1_2_vs_2"


def test_keys_that_are_not_soco_names_are_ignored_or_rejected():
    assert keys.pairs({"correspondence": 0, "correspondence1_vs_": 0, "xcorrespondence1_vs_2": 0}) == []
    assert keys.views({"view": 0, "view0": 0, "view1x": 0, "crops_0": 0}) == []
    for bad in ("", "0", "1_", "a_2", "1_2_3"):
        with pytest.raises(ValueError, match="box set"):
            keys.view_of(bad)


def test_multi_crop_groups_count_the_consecutive_groups():
    assert keys.multi_crop_key(0) == "crops_0"
    batch = {keys.multi_crop_key(g): 0 for g in range(3)}
    assert keys.multi_crop_groups(batch) == 3
    assert keys.multi_crop_groups({keys.multi_crop_key(1): 0}) == 0  # a group 1 without group 0: none
    assert keys.multi_crop_groups({}) == 0
