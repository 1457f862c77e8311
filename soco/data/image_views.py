"""View generators of the image-level baselines: MoCo v2's two crops (also DenseCL) and SwAV's multi-crop.

Registered in ``VIEW_GENERATOR_REGISTRY`` and chosen by ``PRETRAIN.DATA.VIEW_GENERATOR``; both ignore
proposals.

=================  ======================================================================================
``MoCoV2Views``    ``{"views": (2, 3, S, S)}``: two independent draws of MoCo v2's "aug+" pipeline
                   (``MOCO.VIEWS``): random-resized crop, colour jitter 0.4/0.4/0.4/0.1 (p 0.8),
                   grayscale (p 0.2), PIL Gaussian blur sigma ~ U(0.1, 2) (p 0.5), horizontal flip
``MultiCropViews`` ``{"crops_0": (n_0, 3, S_0, S_0), "crops_1": ...}``: SwAV's multi-crop (``SWAV.VIEWS``),
                   one entry per crop resolution (named by ``batch_keys.multi_crop_key``), each crop a
                   random-resized crop of its own scale range, flip, colour distortion of strength 1
                   (jitter 0.8/0.8/0.8/0.2 p 0.8, grayscale p 0.2), PIL Gaussian blur (p 0.5)
=================  ======================================================================================

Views are RGB, normalised by ``PRETRAIN.DATA.PIXEL_MEAN`` / ``PIXEL_STD``. SwAV's code normalises with a red
std of 0.228 instead of 0.229; we use the configured value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms as T
from detectron2.config import CfgNode
from PIL import Image

from .batch_keys import TWO_VIEWS_KEY, multi_crop_key
from .build import VIEW_GENERATOR_REGISTRY
from .photometric import ColorRecipe, Normalizer

logger = logging.getLogger(__name__)

_BLUR_SIGMA = (0.1, 2.0)

#: MoCo v2 "aug+": jitter not strengthened relative to MoCo v1, blur added, no solarization.
MOCO_V2_COLOR = ColorRecipe(
    jitter=(0.4, 0.4, 0.4, 0.1),
    jitter_prob=0.8,
    grayscale_prob=0.2,
    blur_prob=0.5,
    blur_sigma=_BLUR_SIGMA,
    solarize_prob=0.0,
    solarize_threshold=128,
)

#: SwAV's colour distortion of strength s = 1 (SimCLR's recipe) followed by its PIL blur.
SWAV_COLOR = ColorRecipe(
    jitter=(0.8, 0.8, 0.8, 0.2),
    jitter_prob=0.8,
    grayscale_prob=0.2,
    blur_prob=0.5,
    blur_sigma=_BLUR_SIGMA,
    solarize_prob=0.0,
    solarize_threshold=128,
)


def _check_scale(scale: Sequence[float], key: str) -> tuple[float, float]:
    low, high = float(scale[0]), float(scale[1])
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"{key} must satisfy 0 < min <= max <= 1 (fractions of the image area), got {scale}")
    return low, high


def _warn_if_proposals(cfg: CfgNode, generator: str) -> None:
    if cfg.PRETRAIN.DATA.PROPOSALS:
        logger.warning(
            "%s ignores proposals, but PRETRAIN.DATA.PROPOSALS=%s is set; set it to '' to skip reading it",
            generator,
            cfg.PRETRAIN.DATA.PROPOSALS,
        )


class _CropPipeline:
    """PIL image -> crop, geometric and colour augmentation -> normalised ``(3, S, S)`` tensor."""

    def __init__(self, augment: T.Compose, mean: Sequence[float], std: Sequence[float]):
        self.augment = augment
        self.normalize = Normalizer(mean, std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.augment(image))


@VIEW_GENERATOR_REGISTRY.register()
class MoCoV2Views:
    """Two independent MoCo v2 ("aug+") views of the image (query, key), as ``{"views": (2, 3, S, S)}``."""

    def __init__(self, cfg: CfgNode):
        size = int(cfg.MOCO.VIEWS.SIZE)
        if size <= 0:
            raise ValueError(f"MOCO.VIEWS.SIZE must be positive, got {size}")
        scale = _check_scale(cfg.MOCO.VIEWS.CROP_SCALE, "MOCO.VIEWS.CROP_SCALE")
        _warn_if_proposals(cfg, type(self).__name__)
        augment = T.Compose(
            [
                T.RandomResizedCrop(size, scale=scale),
                MOCO_V2_COLOR.build(cfg.PRETRAIN.DATA.FAST_PHOTOMETRIC),
                T.RandomHorizontalFlip(),
            ]
        )
        self.pipeline = _CropPipeline(augment, cfg.PRETRAIN.DATA.PIXEL_MEAN, cfg.PRETRAIN.DATA.PIXEL_STD)

    def __call__(self, image: Image.Image, proposals: np.ndarray | None) -> dict[str, torch.Tensor]:
        return {TWO_VIEWS_KEY: torch.stack([self.pipeline(image), self.pipeline(image)])}


@VIEW_GENERATOR_REGISTRY.register()
class MultiCropViews:
    """SwAV's multi-crop: ``SWAV.VIEWS.NUM_CROPS[g]`` crops of side ``SIZES[g]`` for every group g.

    Group g's crops cover ``MIN_SCALES[g]``..``MAX_SCALES[g]`` of the image area. Returns
    ``{multi_crop_key(g): (NUM_CROPS[g], 3, SIZES[g], SIZES[g])}``.
    """

    def __init__(self, cfg: CfgNode):
        views = cfg.SWAV.VIEWS
        lengths = {name: len(views[name]) for name in ("SIZES", "NUM_CROPS", "MIN_SCALES", "MAX_SCALES")}
        if len(set(lengths.values())) != 1 or lengths["SIZES"] == 0:
            raise ValueError(
                "SWAV.VIEWS.{SIZES, NUM_CROPS, MIN_SCALES, MAX_SCALES} need one entry per crop group, "
                f"all of the same non-zero length; got lengths {lengths}"
            )
        if min(views.SIZES) <= 0 or min(views.NUM_CROPS) <= 0:
            raise ValueError(f"SWAV.VIEWS.SIZES {views.SIZES} and NUM_CROPS {views.NUM_CROPS} must be > 0")
        _warn_if_proposals(cfg, type(self).__name__)
        self.groups: list[tuple[int, _CropPipeline]] = []
        for g, (size, count) in enumerate(zip(views.SIZES, views.NUM_CROPS, strict=True)):
            scale_key = f"SWAV.VIEWS.MIN_SCALES/MAX_SCALES of group {g}"
            scale = _check_scale((views.MIN_SCALES[g], views.MAX_SCALES[g]), scale_key)
            augment = T.Compose(
                [
                    T.RandomResizedCrop(int(size), scale=scale),
                    T.RandomHorizontalFlip(),
                    SWAV_COLOR.build(cfg.PRETRAIN.DATA.FAST_PHOTOMETRIC),
                ]
            )
            pipeline = _CropPipeline(augment, cfg.PRETRAIN.DATA.PIXEL_MEAN, cfg.PRETRAIN.DATA.PIXEL_STD)
            self.groups.append((int(count), pipeline))

    def __call__(self, image: Image.Image, proposals: np.ndarray | None) -> dict[str, torch.Tensor]:
        return {
            multi_crop_key(g): torch.stack([pipeline(image) for _ in range(count)])
            for g, (count, pipeline) in enumerate(self.groups)
        }
