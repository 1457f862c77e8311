"""Photometric augmentations of SoCo's views: BYOL colour recipes, cutout in boxes, normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter


class RandomPILGaussianBlur:
    """PIL Gaussian blur with a radius drawn from U(sigma_min, sigma_max), as in BYOL/SoCo."""

    def __init__(self, sigma_range: Sequence[float]):
        self.sigma_min, self.sigma_max = float(sigma_range[0]), float(sigma_range[1])

    def __call__(self, image: Image.Image) -> Image.Image:
        radius = torch.empty(1).uniform_(self.sigma_min, self.sigma_max).item()
        return image.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma_range=({self.sigma_min}, {self.sigma_max}))"


@dataclass(frozen=True)
class ColorRecipe:
    """Probabilities and strengths of one BYOL colour pipeline (applied to a PIL view)."""

    jitter: tuple[float, float, float, float]  # brightness, contrast, saturation, hue
    jitter_prob: float
    grayscale_prob: float
    blur_prob: float
    blur_sigma: tuple[float, float]
    solarize_prob: float
    solarize_threshold: int

    def build(self) -> T.Compose:
        """ColorJitter (p) -> Grayscale (p) -> PIL Gaussian blur (p) -> Solarize (p)."""
        return T.Compose(
            [
                T.RandomApply([T.ColorJitter(*self.jitter)], p=self.jitter_prob),
                T.RandomGrayscale(p=self.grayscale_prob),
                T.RandomApply([RandomPILGaussianBlur(self.blur_sigma)], p=self.blur_prob),
                T.RandomSolarize(threshold=self.solarize_threshold, p=self.solarize_prob),
            ]
        )


def to_normalized_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float32 tensor, scaled to [0, 1] then normalised by mean/std."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (pixels - mean_t) / std_t


def cutout_in_boxes(
    image: torch.Tensor, boxes: np.ndarray, prob: float, area_range: Sequence[float], rng=np.random
) -> torch.Tensor:
    """Zero a random square inside each box with probability ``prob`` (in place, returns ``image``).

    ``image`` (3, H, W) is normalised, so zero is the mean colour. ``boxes`` (K, 4) are continuous xyxy in
    the view's pixels (after the flip). The square's area is U(area_range) x the box area; its centre is an
    integer pixel inside the box; it is clamped to the image. All coordinates are integers (the original
    passed float tensors to ``random.randint`` and crashed).
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
        half = int(round(side / 2))
        top, bottom = max(centre_y - half, 0), min(centre_y + half, height)
        left, right = max(centre_x - half, 0), min(centre_x + half, width)
        image[:, top:bottom, left:right] = 0.0
    return image


def _pixel_span(start: float, end: float, size: int) -> tuple[int, int]:
    """First and last integer pixel covered by ``[start, end)``, kept inside ``[0, size - 1]``."""
    first = min(max(int(np.floor(start)), 0), size - 1)
    last = min(max(int(np.ceil(end)) - 1, first), size - 1)
    return first, last
