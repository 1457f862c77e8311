"""Register users' own COCO-format datasets next to Detectron2's builtin ones.

Builtin datasets (COCO, LVIS, Pascal VOC, ...) are registered by Detectron2 itself from
``$DETECTRON2_DATASETS``; this module only adds a dataset given as a json file plus an image folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

logger = logging.getLogger(__name__)


def register_coco_format_dataset(name: str, json_file: str, image_root: str) -> None:
    """Register ``name`` as a COCO-format instance dataset (evaluated with the COCO evaluator).

    Registering the same name again with the same files is a no-op, so every worker process of a
    multi-GPU run (and a training followed by an evaluation in one process) can call this.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"dataset {name!r}: annotation file {json_file!r} does not exist")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"dataset {name!r}: image folder {image_root!r} does not exist")
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return
        raise ValueError(
            f"dataset name {name!r} is already registered (json {meta.get('json_file')!r}); pick another name"
        )
    register_coco_instances(name, {}, json_file, image_root)


def add_register_coco_argument(parser: argparse.ArgumentParser, use: str = "DATASETS.TRAIN/TEST") -> None:
    """``--register-coco NAME JSON IMAGE_DIR`` (repeatable), read by :func:`register_coco_format_datasets`."""
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help=f"register a COCO-format dataset under NAME (repeatable); use NAME in {use}",
    )


def register_coco_format_datasets(entries: Iterable[Sequence[str]] | None) -> list[str]:
    """Register every ``(name, json_file, image_root)`` of ``--register-coco``; returns the names."""
    names = []
    for name, json_file, image_root in entries or []:
        register_coco_format_dataset(name, json_file, image_root)
        names.append(name)
    return names


def boxes_per_category(json_file: str) -> dict[str, int]:
    """``{category name: number of annotations}`` of a COCO-format file, every declared category listed."""
    with open(json_file) as f:
        content = json.load(f)
    counts = Counter(annotation["category_id"] for annotation in content.get("annotations", []))
    return {category["name"]: counts[category["id"]] for category in content.get("categories", [])}


def registered_box_counts(dataset_names: Iterable[str]) -> dict[str, dict[str, int]]:
    """:func:`boxes_per_category` of each registered dataset, each annotation file read once for the checks
    below (a user's COCO-format file can be hundreds of MB)."""
    return {name: boxes_per_category(MetadataCatalog.get(name).json_file) for name in dataset_names}


def check_num_classes(cfg: CfgNode, box_counts: Mapping[str, Mapping[str, int]]) -> None:
    """Fail early when a user dataset used for training declares another number of categories than
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (Detectron2 would crash mid-training or train unused classes).

    ``box_counts``: :func:`registered_box_counts` of the user datasets.
    """
    for name, counts in box_counts.items():
        if name not in cfg.DATASETS.TRAIN:
            continue
        if not counts:
            json_file = MetadataCatalog.get(name).json_file
            raise ValueError(f"{json_file}: no 'categories' list; a COCO-format file needs one")
        if len(counts) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise ValueError(
                f"dataset {name!r} has {len(counts)} categories but MODEL.ROI_HEADS.NUM_CLASSES is "
                f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}; add 'MODEL.ROI_HEADS.NUM_CLASSES {len(counts)}' to the "
                "command"
            )


def log_classes_without_boxes(box_counts: Mapping[str, Mapping[str, int]]) -> None:
    """Warn, with a count, about each dataset of ``box_counts`` (:func:`registered_box_counts`) whose
    categories include some that no box uses (such a class is never trained on, or scores NaN AP in an
    evaluation)."""
    for name, counts in box_counts.items():
        empty = [category for category, count in counts.items() if count == 0]
        if empty:
            logger.warning(
                "dataset %s: %d of %d classes have no boxes (%s)",
                name,
                len(empty),
                len(counts),
                ", ".join(empty),
            )
