"""Pretraining data: image lists, proposal-aware view generators, the resumable loader; users' own
COCO-format datasets registered for every tool (``datasets``)."""
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
from .datasets import add_register_coco_argument, register_coco_format_dataset, register_coco_format_datasets

__all__ = [
    "VIEW_GENERATOR_REGISTRY",
    "ImageRecord",
    "PretrainDataset",
    "PretrainLoader",
    "StreamSampler",
    "add_register_coco_argument",
    "build_pretrain_dataset",
    "build_pretrain_train_loader",
    "count_images",
    "image_key",
    "list_images",
    "register_coco_format_dataset",
    "register_coco_format_datasets",
]
