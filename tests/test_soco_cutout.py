"""Cutout inside SoCo's boxes (``soco.data.soco.cutout``)."""

from __future__ import annotations

import numpy as np
import torch

from soco.data.soco.cutout import cutout_in_boxes


def test_cutout_stays_inside_the_box_and_accepts_float_coordinates():
    image = torch.ones(3, 64, 64)
    box = np.array([[10.3, 20.7, 40.2, 50.9]], dtype=np.float32)
    cutout_in_boxes(image, box, prob=1.0, area_range=(0.2, 0.2), rng=np.random.RandomState(0))
    zero = image[0] == 0
    rows, cols = torch.nonzero(zero, as_tuple=True)
    assert zero.any()
    # the square is centred inside the box; it may stick out by at most half its side
    half = np.sqrt(0.2 * 30 * 30) / 2 + 1
    assert cols.min() >= 10 - half and cols.max() <= 40 + half and rows.min() >= 20 - half
    untouched = torch.ones(3, 64, 64)
    cutout_in_boxes(untouched, box, prob=0.0, area_range=(0.2, 0.2), rng=np.random.RandomState(0))
    assert (untouched == 1).all()
