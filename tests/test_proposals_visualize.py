import numpy as np

from soco_proposals.visualize import FILTERED_COLOR, RAW_COLOR, render_proposals, xywh_to_xyxy_edges


def test_xywh_to_pixel_edges():
    np.testing.assert_array_equal(xywh_to_xyxy_edges(np.array([[2, 3, 10, 0]])), [[2, 3, 13, 4]])


def test_render_draws_raw_left_and_filtered_right():
    image = np.full((100, 80, 3), 128, dtype=np.uint8)
    canvas = render_proposals(image, np.array([[10, 10, 50, 60]]), np.zeros((0, 4), dtype=np.int64))
    height, width = canvas.shape[:2]
    assert canvas.dtype == np.uint8 and width == 2 * (width // 2) and height > 100  # small image upscaled
    left, right = canvas[:, : width // 2].astype(int), canvas[:, width // 2 :].astype(int)
    raw = np.array(RAW_COLOR) * 255
    assert (np.abs(left - raw).sum(axis=2) < 60).any()  # the raw box outline is drawn
    assert np.abs(right - 128).max() <= 2  # nothing filtered: the right panel is the bare image
    filtered = render_proposals(image, np.zeros((0, 4)), np.array([[0, 0, 79, 99]]))[:, width // 2 :]
    assert (np.abs(filtered.astype(int) - np.array(FILTERED_COLOR) * 255).sum(axis=2) < 60).any()
