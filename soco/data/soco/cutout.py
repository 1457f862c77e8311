"""Cutout inside boxes: SoCo's box-aware occlusion of the crop views (C4 and FPN 100-epoch recipes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def cutout_in_boxes(
    image: torch.Tensor, boxes: np.ndarray, prob: float, area_range: Sequence[float], rng=np.random
) -> torch.Tensor:
    """Zero a random square inside each box with probability ``prob`` (in place, returns ``image``).

    ``image`` (3, H, W) is normalised, so zero is the mean colour. ``boxes`` (K, 4) are continuous xyxy in
    the view's pixels (after the flip). Per box, as the original's ``RandomCutoutInBbox``: the square's
    area is U(area_range) x the box area, ``w = round(sqrt(area))``; its centre ``(cx, cy)`` is an integer
    pixel inside the box; it covers the pixels ``cx - w // 2 .. cx + w // 2`` (and the same rows), both
    ends included and clipped to the image. The side is therefore odd, ``2 * (w // 2) + 1`` before
    clipping, and never empty. The draws, in this order per box: ``uniform()`` (apply?), then if applied
    ``uniform(area_range)``, ``randint`` for ``cx``, ``randint`` for ``cy``. All coordinates are integers
    (the original passed float tensors to ``random.randint`` and crashed).
    """
    _, height, width = image.shape
    for x1, y1, x2, y2 in boxes:
        if rng.uniform() >= prob:
            continue
        side = np.sqrt(rng.uniform(area_range[0], area_range[1]) * (x2 - x1) * (y2 - y1))
        first_col, last_col = _pixel_span(x1, x2, width)
        first_row, last_row = _pixel_span(y1, y2, height)
        centre_x = rng.randint(first_col, last_col + 1)
        centre_y = rng.randint(first_row, last_row + 1)
        reach = int(round(side)) // 2
        top, bottom = max(centre_y - reach, 0), min(centre_y + reach, height - 1)
        left, right = max(centre_x - reach, 0), min(centre_x + reach, width - 1)
        image[:, top : bottom + 1, left : right + 1] = 0.0
    return image


def _pixel_span(start: float, end: float, size: int) -> tuple[int, int]:
    """First and last integer pixel covered by ``[start, end)``, kept inside ``[0, size - 1]``."""
    first = min(max(int(np.floor(start)), 0), size - 1)
    last = min(max(int(np.ceil(end)) - 1, first), size - 1)
    return first, last
