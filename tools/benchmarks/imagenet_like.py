"""ImageNet-sized JPEGs (about 500 x 375) cut from real photos, for the data benchmarks.

The photos are scikit-image's bundled natural images (no download). Each JPEG is a different random crop
of one photo, resized to ImageNet's usual 500-pixel long side in landscape or portrait, so decoding and
colour statistics are those of real photos rather than noise.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
)
LONG_SIDE, SHORT_SIDE = 500, 375


def _photos() -> list[Image.Image]:
    from skimage import data

    photos = []
    for name in PHOTOS:
        pixels = getattr(data, name)()
        if name == "stereo_motorcycle":  # (left, right, disparity): two real photos
            photos += [Image.fromarray(pixels[0]), Image.fromarray(pixels[1])]
        else:
            photos.append(Image.fromarray(pixels).convert("RGB"))
    return photos


def imagenet_sized_jpegs(count: int, seed: int = 0, quality: int = 90) -> list[bytes]:
    """``count`` JPEG files (bytes): crops of >= 60 % of a photo's side, 500 x 375 or 375 x 500."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    jpegs = []
    for index in range(count):
        photo = photos[index % len(photos)]
        portrait = bool(rng.uniform() < 0.25)  # about a quarter of ImageNet photos are portrait
        size = (SHORT_SIDE, LONG_SIDE) if portrait else (LONG_SIDE, SHORT_SIDE)
        aspect = size[0] / size[1]
        width, height = photo.size
        crop_w = min(width, height * aspect) * rng.uniform(0.6, 1.0)
        crop_h = crop_w / aspect
        left, top = rng.uniform(0, width - crop_w), rng.uniform(0, height - crop_h)
        view = photo.resize(size, Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
        buffer = io.BytesIO()
        view.save(buffer, "JPEG", quality=quality)
        jpegs.append(buffer.getvalue())
    return jpegs


def random_proposals(width: int, height: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` xywh boxes (w = max_x - min_x), each 5-60 % of the image's sides, as a store holds them."""
    wh = (rng.uniform(0.05, 0.6, size=(count, 2)) * [width - 1, height - 1]).astype(np.int64)
    xy = (rng.uniform(0, 1, size=(count, 2)) * ([width - 1, height - 1] - wh)).astype(np.int64)
    return np.concatenate([xy, wh], axis=1)
