"""Draw an image's raw and filtered proposals side by side (Detectron2's ``Visualizer``)."""

from __future__ import annotations

import numpy as np

RAW_COLOR = (0.1, 0.6, 1.0)
FILTERED_COLOR = (1.0, 0.3, 0.1)
MIN_CANVAS_SIDE = 800


def xywh_to_xyxy_edges(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xywh with w = max_x - min_x -> (N, 4) pixel-edge xyxy (x2 = max_x + 1) for drawing."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:] + 1], axis=1)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, color: tuple[float, float, float]) -> np.ndarray:
    """Image (H, W, 3) uint8 RGB with the xywh boxes drawn as outlines.

    Returns (H', W', 3) uint8, upscaled when the image is small.
    """
    from detectron2.utils.visualizer import Visualizer

    # draw small images on a larger canvas so that the outlines stay thin relative to the image
    visualizer = Visualizer(image, scale=max(1.0, MIN_CANVAS_SIDE / max(image.shape[:2])))
    for box in xywh_to_xyxy_edges(boxes):
        visualizer.draw_box(box, alpha=0.9, edge_color=color)
    return visualizer.get_output().get_image()


def render_proposals(image: np.ndarray, raw_boxes: np.ndarray, filtered_boxes: np.ndarray) -> np.ndarray:
    """Raw boxes (left) and filtered boxes (right) on the image: (H', 2 W', 3) uint8."""
    left = draw_boxes(image, raw_boxes, RAW_COLOR)
    right = draw_boxes(image, filtered_boxes, FILTERED_COLOR)
    return np.concatenate([left, right], axis=1)
