"""Tiny probe sets for tests: a two-class image folder and a pair of registered COCO-format box sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from transfer_testing import write_tiny_coco_dataset

from soco.data import register_coco_format_dataset


def write_probe_image_folder(root: Path, per_class: tuple[int, int] = (4, 2), seed: int = 0) -> Path:
    """``root/{train,val}/{dark,bright}/*.png``: 40-56 px images, dark or bright with noise."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val"), per_class, strict=True):
        for label, (name, base) in enumerate((("dark", 40), ("bright", 200))):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = 40 + 8 * (i % 3), 48 + 8 * ((i + label) % 2)
                pixels = np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root


def register_probe_box_sets(root: Path, prefix: str, sizes: tuple[int, int] = (6, 3)) -> tuple[str, str]:
    """Register ``{prefix}_train`` / ``{prefix}_test`` (tiny rectangles and ellipses); returns the names."""
    names = (f"{prefix}_train", f"{prefix}_test")
    for seed, (name, count) in enumerate(zip(names, sizes, strict=True)):
        json_file, images = write_tiny_coco_dataset(root / name, num_images=count, seed=seed)
        register_coco_format_dataset(name, str(json_file), str(images))
    return names
