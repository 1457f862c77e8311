"""Helpers of the SoCo model tests: tiny configs at test sizes, batches from the real view generators."""

from __future__ import annotations

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from PIL import Image
from torch.utils.data import default_collate

import soco  # noqa: F401  (registers the meta-architectures and view generators)
from soco.config import add_soco_config
from soco.data import VIEW_GENERATOR_REGISTRY

TINY = {
    "fpn": "soco/configs/tiny/SoCo_FPN.yaml",
    "star": "soco/configs/tiny/SoCo_FPN_Star.yaml",
    "c4": "soco/configs/tiny/SoCo_C4.yaml",
}


def tiny_cfg(variant: str, *opts) -> CfgNode:
    """The tiny config of ``variant`` (fpn, star, c4) with 64 px views, then ``opts`` (KEY VALUE ...)."""
    cfg = get_cfg()
    add_soco_config(cfg)
    cfg.merge_from_file(TINY[variant])
    sizes = {"fpn": [64, 64, 32], "star": [64, 64, 48, 32], "c4": [64, 64]}[variant]
    cfg.merge_from_list(["SOCO.VIEWS.SIZES", sizes, "SOCO.BOXES.LEVEL_THRESHOLDS", [16, 32, 48, 64], *opts])
    return cfg


def tiny_batch(cfg: CfgNode, num_images: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A collated batch of ``num_images`` noise images with four proposals each, from ``cfg``'s generator."""
    rng = np.random.RandomState(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = VIEW_GENERATOR_REGISTRY.get(cfg.PRETRAIN.DATA.VIEW_GENERATOR)(cfg)
    samples = []
    for _ in range(num_images):
        pixels = rng.randint(0, 255, size=(90, 120, 3)).astype(np.uint8)
        proposals = np.array([[5, 5, 40, 30], [50, 20, 60, 60], [0, 0, 119, 89], [20, 40, 30, 40]])
        samples.append(generator(Image.fromarray(pixels), proposals))
    return default_collate(samples)
