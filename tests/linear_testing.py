"""Helpers for the linear-classification tests: a tiny separable ImageFolder and tiny-config runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

TINY_CONFIG = str(Path(__file__).resolve().parents[1] / "soco/configs/tiny/Linear.yaml")
#: Class name -> base RGB colour: the classes are separable by colour even for a random ResNet.
COLOURS = {"blue": (30, 40, 210), "green": (40, 190, 50), "red": (210, 40, 30)}


def write_colour_folder(root: Path, per_class: int, seed: int = 0, size: tuple[int, int] = (40, 48)) -> Path:
    """``root/<colour>/<colour>_<i>.png``: noisy images of one colour per class, sides around ``size``."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = size[0] + 4 * (i % 3), size[1] + 4 * (i % 2)
            pixels = np.clip(np.array(colour) + rng.integers(-25, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root


def write_colour_splits(root: Path, train_per_class: int = 8, val_per_class: int = 3) -> tuple[Path, Path]:
    """Training and validation folders (different noise) of the three colour classes."""
    train = write_colour_folder(root / "train", train_per_class, seed=0)
    val = write_colour_folder(root / "val", val_per_class, seed=1)
    return train, val


def tiny_opts(train: Path, val: Path, output: Path, *extra: str) -> list[str]:
    """Overrides of the tiny config: random-init ResNet-18, 32 px crops, batch 8, 4 epochs."""
    return [
        "LINEAR.DATA.TRAIN", str(train), "LINEAR.DATA.VAL", str(val), "LINEAR.RANDOM_INIT", "True",
        "LINEAR.DATA.CROP_SIZE", "32", "LINEAR.DATA.RESIZE_SIZE", "36", "SOLVER.IMS_PER_BATCH", "8",
        "SOLVER.EPOCHS", "4", "LINEAR.STEP_EPOCHS", "(2, 3)", "OUTPUT_DIR", str(output), *extra,
    ]  # fmt: skip


def linear_args(opts: list[str], resume: bool = False, config_file: str = TINY_CONFIG) -> argparse.Namespace:
    """The namespace ``run_linear`` expects, for one CPU process."""
    return argparse.Namespace(
        config_file=config_file, opts=opts, resume=resume, num_gpus=1, num_machines=1, machine_rank=0,
        dist_url="auto", eval_only=False,
    )  # fmt: skip
