import numpy as np

from soco_proposals.box_codec import decode_boxes, encode_boxes


def _round_trip(boxes):
    encoded = encode_boxes(boxes)
    return encoded, decode_boxes(encoded.packed, encoded.num_unique, encoded.bits, encoded.index)


def test_round_trip_keeps_order_and_duplicates():
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 500, (20, 4))
    boxes = distinct[rng.integers(0, 20, 45)]
    encoded, decoded = _round_trip(boxes)
    np.testing.assert_array_equal(decoded, boxes)
    assert decoded.dtype == np.int64
    assert encoded.num_unique == len(np.unique(boxes, axis=0)) and encoded.bits == 9
    assert len(encoded.packed) == -(-encoded.num_unique * 4 * 9 // 8)  # 4.5 bytes per distinct box


def test_extreme_values_and_empty():
    for boxes in ([[65535, 0, 65535, 1]], [[0, 0, 0, 0]], [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4]]):
        encoded, decoded = _round_trip(np.array(boxes, dtype=np.uint16))
        np.testing.assert_array_equal(decoded, boxes)
    assert encode_boxes(np.array([[65535, 0, 65535, 1]])).bits == 16
    encoded, decoded = _round_trip(np.zeros((0, 4), dtype=np.uint16))
    assert decoded.shape == (0, 4) and encoded.num_unique == 0 and len(encoded.packed) == 0
