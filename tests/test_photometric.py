"""Photometric augmentations shared by the view generators (``soco.data.photometric``)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from soco.data.photometric import RandomPILGaussianBlur


def test_pil_gaussian_blur_smooths():
    pixels = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([pixels] * 3, axis=-1))
    blurred = np.asarray(RandomPILGaussianBlur((1.0, 2.0))(image), dtype=np.float64)
    assert blurred.std() < 0.5 * pixels.std()
