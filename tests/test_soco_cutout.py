"""Cutout inside SoCo's boxes (``soco.data.soco.cutout``), square for square as the original's
``RandomCutoutInBbox``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soco.data.soco.cutout import cutout_in_boxes


class ScriptedRng:
    """Returns the given area fraction and centre, and records every draw (name, arguments)."""

    def __init__(self, fraction: float, centre: tuple[int, int], apply: bool = True) -> None:
        self.fraction, self.centre, self.apply = fraction, list(centre), apply
        self.draws: list[tuple] = []

    def uniform(self, *bounds: float) -> float:
        self.draws.append(("uniform", *bounds))
        if not bounds:
            return 0.0 if self.apply else 1.0
        assert bounds[0] <= self.fraction <= bounds[1]
        return self.fraction

    def randint(self, low: int, high: int) -> int:
        self.draws.append(("randint", low, high))
        value = self.centre.pop(0)
        assert low <= value < high, "the centre is a pixel inside the box"
        return value


def _zeroed(image: torch.Tensor) -> tuple[list[int], list[int]]:
    """Rows and columns that hold zeros; asserts the zeros form one full rectangle."""
    zero = (image == 0).all(dim=0)
    rows = torch.nonzero(zero.any(dim=1)).flatten().tolist()
    cols = torch.nonzero(zero.any(dim=0)).flatten().tolist()
    assert zero.sum() == len(rows) * len(cols), "not a rectangle"
    return rows, cols


def _cut(area: float, centre: tuple[int, int], box=(10.0, 10.0, 50.0, 50.0), size: int = 64):
    """Cutout of ``box`` drawing the area fraction that makes a square of ``area``, centred at ``centre``."""
    image = torch.ones(3, size, size)
    rng = ScriptedRng(area / ((box[2] - box[0]) * (box[3] - box[1])), centre)
    cutout_in_boxes(image, np.array([box]), prob=0.5, area_range=(0.0, 1.0), rng=rng)
    return _zeroed(image), rng


@pytest.mark.parametrize(
    "area, rows",
    [
        (25.0, range(28, 33)),  # side 5: w = 5, 30 - 2 .. 30 + 2
        (16.0, range(28, 33)),  # side 4: w = 4, w // 2 = 2: odd side 5, as the original
        (4.0, range(29, 32)),  # side 2: 3 x 3
        (0.36, range(30, 31)),  # side 0.6: w = 1, one pixel
        (0.16, range(30, 31)),  # side 0.4: w = 0, still the centre pixel (never empty)
        (12.25, range(28, 33)),  # side 3.5: round half to even, w = 4
        (6.25, range(29, 32)),  # side 2.5: w = 2
    ],
)
def test_square_is_odd_sided_inclusive_around_the_centre(area, rows):
    (zero_rows, zero_cols), _ = _cut(area, (30, 30))
    assert zero_rows == list(rows) and zero_cols == list(rows)


def test_square_is_clipped_at_the_image_borders():
    (rows, cols), _ = _cut(49.0, (0, 63), box=(0.0, 40.0, 30.0, 64.0))  # side 7, centre x 0, y 63
    assert cols == [0, 1, 2, 3] and rows == [60, 61, 62, 63]


def test_draw_order_and_centre_range_per_box():
    (rows, cols), rng = _cut(25.0, (10, 49), box=(10.3, 20.7, 40.2, 50.0))
    # apply?, area, centre x over the box's pixel columns 10..40, centre y over its rows 20..49
    assert rng.draws == [("uniform",), ("uniform", 0.0, 1.0), ("randint", 10, 41), ("randint", 20, 50)]
    assert cols == [8, 9, 10, 11, 12] and rows == [47, 48, 49, 50, 51]


def test_box_not_drawn_costs_one_draw_and_touches_nothing():
    image = torch.ones(3, 64, 64)
    rng = ScriptedRng(0.5, (0, 0), apply=False)
    cutout_in_boxes(image, np.array([[10.0, 10.0, 50.0, 50.0]] * 3), prob=0.5, area_range=(0.1, 0.3), rng=rng)
    assert (image == 1).all() and rng.draws == [("uniform",)] * 3


def test_cutout_stays_near_the_box_with_a_real_generator():
    image = torch.ones(3, 64, 64)
    box = np.array([[10.3, 20.7, 40.2, 50.9]], dtype=np.float32)
    cutout_in_boxes(image, box, prob=1.0, area_range=(0.2, 0.2), rng=np.random.RandomState(0))
    rows, cols = _zeroed(image)
    side = 2 * (int(round(np.sqrt(0.2 * (40.2 - 10.3) * (50.9 - 20.7)))) // 2) + 1
    assert len(rows) == len(cols) == side  # far enough from the borders to be whole
    # the centre is a pixel of the box
    assert 10 <= (cols[0] + cols[-1]) // 2 <= 40 and 20 <= (rows[0] + rows[-1]) // 2 <= 50
