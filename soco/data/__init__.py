"""Pretraining data: image lists, proposal-aware view generators, the resumable loader."""
from soco_proposals.image_list import ImageRecord, image_key, list_images

from . import image_views, soco  # noqa: F401  (registers the view generators)
from .build import (
    VIEW_GENERATOR_REGISTRY,
    PretrainDataset,
    PretrainLoader,
    StreamSampler,
    build_pretrain_dataset,
    build_pretrain_train_loader,
    count_images,
)

__all__ = [
    "VIEW_GENERATOR_REGISTRY",
    "ImageRecord",
    "PretrainDataset",
    "PretrainLoader",
    "StreamSampler",
    "build_pretrain_dataset",
    "build_pretrain_train_loader",
    "count_images",
    "image_key",
    "list_images",
]
