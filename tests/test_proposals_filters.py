import numpy as np
import pytest

from soco_proposals.filters import (
    FilterStrategy,
    filter_boxes,
    keep_mask,
    parse_strategy,
    post_fallback_boxes,
)


def test_parse_strategies_as_the_original():
    assert parse_strategy("ratio3size0308") == FilterStrategy("ratio3size0308", 3.0, 0.3, 0.8)
    assert parse_strategy("ratio2size0110") == FilterStrategy("ratio2size0110", 2.0, 0.1, 1.0)
    assert parse_strategy("none") == FilterStrategy("none")
    assert parse_strategy("ratio4") == FilterStrategy("ratio4", max_aspect_ratio=4.0)
    assert parse_strategy("size01") == FilterStrategy("size01", min_size_ratio=0.1, max_size_ratio=1.0)
    for bad in ("ratio", "ratio33", "ratio3size030", "sizeAB", "iou07", "", "ratioXsize0308"):
        with pytest.raises(ValueError, match="strategy"):
            parse_strategy(bad)


def _kept(boxes, image_size, strategy):
    return keep_mask(np.array(boxes), image_size, parse_strategy(strategy)).tolist()


def test_min_side_edges():
    boxes = [[0, 0, 32, 32], [0, 0, 31, 32], [0, 0, 32, 31], [5, 5, 31, 31], [0, 0, 40, 0]]
    assert _kept(boxes, None, "none") == [True, False, False, False, False]


def test_aspect_ratio_edges():
    boxes = [[0, 0, 96, 32], [0, 0, 97, 32], [0, 0, 32, 96], [0, 0, 32, 97], [0, 0, 50, 50]]
    assert _kept(boxes, None, "ratio3") == [True, False, True, False, True]
    assert _kept([[0, 0, 64, 32], [0, 0, 65, 32]], None, "ratio2") == [True, False]


def test_size_ratio_edges():
    # image 320 x 320: sqrt(w h) / 320 must lie in [0.3, 0.8] -> side between 96 and 256
    boxes = [[0, 0, 96, 96], [0, 0, 95, 96], [0, 0, 256, 256], [0, 0, 256, 257], [0, 0, 64, 144]]
    assert _kept(boxes, (320, 320), "ratio3size0308") == [True, False, True, False, True]
    # the ratio rule still applies together with the size rule: 48 x 192 has the right size, ratio 4
    assert _kept([[0, 0, 48, 192]], (320, 320), "ratio3size0308") == [False]
    assert _kept([[0, 0, 48, 192]], (320, 320), "size03") == [True]
    # H != W: sqrt(W H) is what counts; (H, W) order matters not for the product
    assert _kept([[0, 0, 60, 60]], (100, 400), "size03") == [True]
    assert _kept([[0, 0, 59, 59]], (100, 400), "size03") == [False]


def test_size_strategies_need_the_image_size():
    with pytest.raises(ValueError, match="image size"):
        keep_mask(np.array([[0, 0, 40, 40]]), None, parse_strategy("size03"))


def test_filter_keeps_order_and_handles_empty():
    boxes = np.array([[0, 0, 40, 40], [1, 1, 10, 10], [2, 2, 50, 45]], dtype=np.uint16)
    kept = filter_boxes(boxes, None, parse_strategy("none"))
    assert kept.tolist() == [[0, 0, 40, 40], [2, 2, 50, 45]] and kept.dtype == np.uint16
    assert filter_boxes(np.zeros((0, 4)), (10, 10), parse_strategy("ratio3size0308")).shape == (0, 4)


def test_post_fallback_order_of_rules():
    ratio_ok, too_long, too_small = [0, 0, 40, 40], [0, 0, 200, 40], [0, 0, 10, 10]
    assert post_fallback_boxes(np.array([too_long, ratio_ok, too_small])).tolist() == [ratio_ok]
    assert post_fallback_boxes(np.array([too_long, too_small])).tolist() == [too_long]
    assert post_fallback_boxes(np.array([too_small])).shape == (0, 4)
    assert post_fallback_boxes(np.zeros((0, 4))).shape == (0, 4)
