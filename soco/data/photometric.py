"""Photometric pieces shared by every view generator: colour recipes, PIL blur, normalisation."""

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
