"""Photometric pieces shared by every view generator: colour recipes, PIL blur, normalisation.

:class:`ColorPipeline` is BYOL's colour pipeline as torchvision composes it (``RandomApply([ColorJitter])``,
``RandomGrayscale``, ``RandomApply([blur])``, ``RandomSolarize``) with the same random draws in the same
order and the same output pixels (tests/test_photometric.py compares the two bit for bit), minus some
Python and NumPy round trips: the hue shift is applied to the H band with a lookup table, grayscale is
``convert("L").convert("RGB")`` instead of a NumPy stack, the solarize table is built once.

``fast=True`` (``PRETRAIN.DATA.FAST_PHOTOMETRIC``, off by default) is an approximation: the same random
parameters, but the hue shift and the Gaussian blur, the two costliest steps, run in OpenCV (HSV on the same
0..255 hue scale; a true Gaussian of the same sigma instead of PIL's three box blurs). Pixels then differ
from PIL's by about 0.2 levels on average and a few levels at most (tests/test_photometric.py bounds it),
for about a third less CPU per SoCo sample (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageEnhance, ImageFilter


class RandomPILGaussianBlur:
    """PIL Gaussian blur with a radius drawn from U(sigma_min, sigma_max), as in BYOL/SoCo."""

    def __init__(self, sigma_range: Sequence[float]):
        self.sigma_min, self.sigma_max = float(sigma_range[0]), float(sigma_range[1])

    def __call__(self, image: Image.Image, fast: bool = False) -> Image.Image:
        radius = torch.empty(1).uniform_(self.sigma_min, self.sigma_max).item()
        if fast:
            return _opencv_gaussian_blur(image, radius)
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

    def build(self, fast: bool = False) -> ColorPipeline:
        """ColorJitter (p) -> Grayscale (p) -> PIL Gaussian blur (p) -> Solarize (p); ``fast``: OpenCV's hue
        shift and blur (an approximation, see the module docstring).
        """
        return ColorPipeline(self, fast)


#: for each shift of the H band (0..255), its lookup table
_HUE_SHIFTS = [[(value + shift) % 256 for value in range(256)] for shift in range(256)]


def _as_float32(probability: float) -> float:
    """A probability as torch compares it with a float32 ``torch.rand(1)`` tensor (rounded to float32)."""
    return float(np.float32(probability))


class ColorPipeline:
    """One colour pipeline on PIL RGB views, equal to torchvision's composition (see the module docstring)."""

    def __init__(self, recipe: ColorRecipe, fast: bool = False):
        self.recipe = recipe
        self.fast = fast
        self.jitter = T.ColorJitter(*recipe.jitter)  # its parameter ranges and get_params: the same draws
        self.blur = RandomPILGaussianBlur(recipe.blur_sigma)
        # RandomApply and RandomGrayscale compare a float32 tensor, RandomSolarize a Python float
        self.jitter_prob = _as_float32(recipe.jitter_prob)
        self.grayscale_prob = _as_float32(recipe.grayscale_prob)
        self.blur_prob = _as_float32(recipe.blur_prob)
        threshold = recipe.solarize_threshold
        self.solarize_table = [v if v < threshold else 255 - v for v in range(256)] * 3

    def __call__(self, image: Image.Image) -> Image.Image:
        if not self.jitter_prob < torch.rand(1).item():
            image = self._color_jitter(image)
        if torch.rand(1).item() < self.grayscale_prob:
            image = image.convert("L").convert("RGB")
        if not self.blur_prob < torch.rand(1).item():
            image = self.blur(image, self.fast)
        if torch.rand(1).item() < self.recipe.solarize_prob:
            image = image.point(self.solarize_table)
        return image

    def _color_jitter(self, image: Image.Image) -> Image.Image:
        jitter = self.jitter
        order, brightness, contrast, saturation, hue = jitter.get_params(
            jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue
        )
        for step in order.tolist():
            if step == 0 and brightness is not None:
                image = ImageEnhance.Brightness(image).enhance(brightness)
            elif step == 1 and contrast is not None:
                image = ImageEnhance.Contrast(image).enhance(contrast)
            elif step == 2 and saturation is not None:
                image = ImageEnhance.Color(image).enhance(saturation)
            elif step == 3 and hue is not None:
                # torchvision adds np.int32(hue * 255) to the uint8 H band, wrapping around
                shift = int(hue * 255) % 256
                image = _opencv_hue_shift(image, shift) if self.fast else _pil_hue_shift(image, shift)
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.recipe}, fast={self.fast})"


def _pil_hue_shift(image: Image.Image, shift: int) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    return Image.merge("HSV", (h.point(_HUE_SHIFTS[shift]), s, v)).convert("RGB")


def _opencv():
    import cv2  # only the fast path needs OpenCV (a requirement of the proposal backends anyway)

    cv2.setNumThreads(1)  # one data worker, one core
    return cv2


def _opencv_hue_shift(image: Image.Image, shift: int) -> Image.Image:
    """The hue shift with OpenCV's HSV conversion on a 0..255 hue circle (``*_FULL``), as PIL's."""
    cv2 = _opencv()
    hsv = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] += np.uint8(shift)  # wraps around like PIL's uint8 band
    return Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL))


def _opencv_gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """A Gaussian of standard deviation ``sigma`` (PIL's radius), edges replicated as PIL does."""
    cv2 = _opencv()
    blurred = cv2.GaussianBlur(np.asarray(image), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return Image.fromarray(blurred)


class Normalizer:
    """PIL RGB view -> (3, H, W) float32 tensor: ``(pixel / 255 - mean) / std``, channel by channel.

    The arithmetic (float32 division by 255, subtraction, division) is the one of ``ToTensor`` + ``Normalize``
    done in place on one contiguous tensor.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
        return pixels.to(torch.float32).div_(255.0).sub_(self.mean).div_(self.std)

