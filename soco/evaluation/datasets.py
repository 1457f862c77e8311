"""Labelled probe sets: an ImageFolder of whole images and a Detectron2-registered set of boxes.

Each split yields, per image, a uint8 RGB tensor (3, H, W) already resized and its labels: one class per
image (ImageFolder), or the (B, 4) XYXY boxes in the resized image's pixels and their (B,) classes (box
set). The decoded, resized images are kept in memory after their first use, so the periodic probes of a
training run read the disk once. Images are decoded by pretraining's decoder
(:func:`soco_proposals.image_io.decode_rgb`): one that cannot be decoded is left out of every probe, counted
by failure kind in the log, instead of stopping the run.

A test split must be held out: train and test that are one dataset, one annotation file under two names, or
that share an image (the same file, or files with the same bytes) are refused, since the probes would then
score memorised training instances.
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import ImageOps
from torch import Tensor

from soco_proposals.image_io import ImageDecodeError, decode_rgb
from soco_proposals.image_list import IMAGE_EXTENSIONS

__all__ = [
    "BoxSplit",
    "ImageFolderSplit",
    "ProbeSample",
    "ProbeSplit",
    "check_disjoint_images",
    "load_box_probe_set",
    "load_image_folder_probe_set",
]

logger = logging.getLogger(__name__)


@dataclass
class ProbeSample:
    """One image of a probe split: ``image`` (3, H, W) uint8 RGB; ``boxes`` (B, 4) XYXY or None (image
    label); ``labels`` (B,) for boxes, (1,) for a whole image."""

    image: Tensor
    boxes: Tensor | None
    labels: Tensor


class ProbeSplit(ABC):
    """A labelled split whose decoded, resized images are cached in memory on first use.

    ``split[i]`` is None for an image that cannot be decoded; ``failures`` maps its index to
    ``"kind: reason"`` (an :class:`~soco_proposals.image_io.ImageDecodeError`). ``name`` says which split it
    is in messages.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cache: dict[int, ProbeSample | None] = {}
        self.failures: dict[int, str] = {}

    @abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abstractmethod
    def load(self, index: int) -> ProbeSample:
        """Decode and resize image ``index``; raises :class:`~soco_proposals.image_io.ImageDecodeError`."""

    @abstractmethod
    def sample_labels(self, index: int) -> np.ndarray:
        """Labels of image ``index`` without decoding it: (1,) class of the image, or (B,) of its boxes."""

    def is_cached(self, index: int) -> bool:
        return index in self._cache

    def __getitem__(self, index: int) -> ProbeSample | None:
        if index not in self._cache:
            try:
                self._cache[index] = self.load(index)
            except ImageDecodeError as error:
                self._cache[index] = None
                self.failures[index] = f"{error.kind}: {error.reason}"
                logger.warning("%s: image %d left out of the probes: %s", self.name, index, error)
        return self._cache[index]


def _read_rgb(path: str, exif_orientation: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file by pretraining's decoder; ``exif_orientation``: turned as its EXIF
    orientation says, as Detectron2's ``read_image`` turns the detector's images (their boxes' frame)."""
    image = decode_rgb(path)
    if exif_orientation:
        image = ImageOps.exif_transpose(image)
    return np.asarray(image)


def _to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class ImageFolderSplit(ProbeSplit):
    """Whole images with one class each: short side resized to ``image_size / 0.875`` (256 for 224, as in
    ImageNet evaluation), then the centre ``image_size`` x ``image_size`` crop."""

    def __init__(self, files: list[str], labels: list[int], image_size: int, name: str = "image folder"):
        super().__init__(name)
        self.files = files
        self.labels = labels
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def sample_labels(self, index: int) -> np.ndarray:
        return np.array([self.labels[index]], dtype=np.int64)

    def load(self, index: int) -> ProbeSample:
        image = _read_rgb(self.files[index])
        size = self.image_size
        short = round(size / 0.875)
        height, width = image.shape[:2]
        scale = short / min(height, width)
        new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
        image = T.ResizeTransform(height, width, new_h, new_w).apply_image(image)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        crop = image[top : top + size, left : left + size]
        return ProbeSample(_to_tensor(crop), None, torch.tensor([self.labels[index]]))


def _list_classes(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"probe image folder: {folder!r} does not exist (expected <root>/train, <root>/val)"
        )
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise ValueError(
            f"probe image folder: {folder!r} has no class folders (expected {folder}/<class>/*.jpg)"
        )
    return classes


def _image_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, name) for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def load_image_folder_probe_set(
    root: str, image_size: int
) -> tuple[ImageFolderSplit, ImageFolderSplit, list[str]]:
    """The ``<root>/train/<class>/*`` and ``<root>/val/<class>/*`` splits and their (shared) class names."""
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    classes = _list_classes(train_dir)
    val_classes = _list_classes(val_dir)
    if val_classes != classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        raise ValueError(
            f"probe image folder {root!r}: train/ and val/ have different classes "
            f"(only in train/: {only_train}, only in val/: {only_val})"
        )
    splits = []
    for folder in (train_dir, val_dir):
        files, labels = [], []
        for label, name in enumerate(classes):
            found = _image_files(os.path.join(folder, name))
            files += found
            labels += [label] * len(found)
        if not files:
            raise ValueError(f"probe image folder {folder!r}: no images in its class folders")
        splits.append(ImageFolderSplit(files, labels, image_size, name=f"probe image folder {folder}"))
    check_disjoint_images(splits[0].files, splits[1].files, train_dir, val_dir)
    counts = [Counter(split.labels) for split in splits]
    empty = [
        f"{split}/{name}"
        for split, c in zip(("train", "val"), counts, strict=True)
        for i, name in enumerate(classes)
        if not c[i]
    ]
    if empty:
        logger.warning("probe image folder %s: %d class folders without images: %s", root, len(empty), empty)
    return splits[0], splits[1], classes


class BoxSplit(ProbeSplit):
    """Ground-truth boxes of a registered dataset; images resized as the detector's test transform
    ``ResizeShortestEdge(min_size, max_size)`` and the boxes with them."""

    def __init__(self, records: list[dict], min_size: int, max_size: int, name: str = "box set"):
        super().__init__(name)
        self.records = records  # {"file_name", "boxes" (B, 4) XYXY_ABS float32, "labels" (B,) int64}
        self.resize = T.ResizeShortestEdge(min_size, max_size, sample_style="choice")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_boxes(self) -> int:
        return sum(len(r["labels"]) for r in self.records)

    def sample_labels(self, index: int) -> np.ndarray:
        return self.records[index]["labels"]

    def load(self, index: int) -> ProbeSample:
        record = self.records[index]
        image = _read_rgb(record["file_name"], exif_orientation=True)
        transform = self.resize.get_transform(image)
        boxes = transform.apply_box(record["boxes"]).astype(np.float32)
        return ProbeSample(
            _to_tensor(transform.apply_image(image)),
            torch.from_numpy(boxes),
            torch.from_numpy(record["labels"]),
        )


def _box_records(name: str) -> tuple[list[dict], Counter]:
    """Images with at least one usable box; counts of what was left out."""
    skipped: Counter = Counter()
    records = []
    for entry in DatasetCatalog.get(name):
        boxes, labels = [], []
        for annotation in entry.get("annotations", []):
            if annotation.get("iscrowd", 0):
                skipped["crowd boxes"] += 1
                continue
            box = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
            if box[2] <= box[0] or box[3] <= box[1]:
                skipped["empty boxes"] += 1
                continue
            boxes.append(box)
            labels.append(annotation["category_id"])
        if not boxes:
            skipped["images without boxes"] += 1
            continue
        records.append(
            {
                "file_name": entry["file_name"],
                "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                "labels": np.array(labels, dtype=np.int64),
            }
        )
    if not records:
        raise ValueError(f"probe box set {name!r}: no image has a usable (non-crowd, non-empty) box")
    return records, skipped


def _file_digest(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_disjoint_images(
    train_files: Sequence[str], test_files: Sequence[str], train_name: str, test_name: str
) -> None:
    """Refuse a test split that shares an image with the training split: the same file (resolved path) or a
    file with the same bytes (a copy). A file that cannot be read is left to the decoder to count."""
    train_paths = {os.path.realpath(f) for f in train_files}
    shared = sorted({os.path.realpath(f) for f in test_files} & train_paths)
    if shared:
        raise ValueError(
            f"probe sets {train_name!r} (train) and {test_name!r} (test) share {len(shared)} image files "
            f"(e.g. {shared[0]}); the test split must be held out"
        )
    digests: dict[str, str] = {}
    for path in sorted(train_paths):
        if os.path.isfile(path):
            digests.setdefault(_file_digest(path), path)
    copies = [
        (path, digests[digest])
        for path in test_files
        if os.path.isfile(path) and (digest := _file_digest(path)) in digests
    ]
    if copies:
        raise ValueError(
            f"probe sets {train_name!r} (train) and {test_name!r} (test) share {len(copies)} images with "
            f"identical bytes (e.g. test {copies[0][0]} = train {copies[0][1]}); the test split must be "
            "held out"
        )
    logger.info(
        "probe sets %s / %s: no image shared (%d + %d files compared by path and content)",
        train_name, test_name, len(train_paths), len(test_files),
    )  # fmt: skip


def _check_held_out(train_name: str, test_name: str) -> None:
    """The two registered box sets are different datasets from different annotation files."""
    if train_name == test_name:
        raise ValueError(
            f"probe box sets: train and test are the same dataset {train_name!r}; register a held-out test "
            "set (PRETRAIN.PROBES.BOX_TEST / --box-test)"
        )
    files = {
        name: os.path.realpath(json_file)
        for name in (train_name, test_name)
        if (json_file := MetadataCatalog.get(name).get("json_file", ""))
    }
    if len(files) == 2 and files[train_name] == files[test_name]:
        raise ValueError(
            f"probe box sets {train_name!r} (train) and {test_name!r} (test) are the same annotation file "
            f"{files[train_name]} under two names; register a held-out test set"
        )


def load_box_probe_set(
    train_name: str, test_name: str, min_size: int, max_size: int
) -> tuple[BoxSplit, BoxSplit, list[str]]:
    """Box splits of two registered, held-out datasets with the same classes, and the class names."""
    for name in (train_name, test_name):
        if name not in DatasetCatalog.list():
            raise KeyError(
                f"probe box set {name!r} is not a registered dataset; register it (--register-coco NAME JSON "
                "IMAGE_DIR) or use a builtin one"
            )
    _check_held_out(train_name, test_name)
    # loading a COCO-format dataset fills its metadata's thing_classes
    loaded = {name: _box_records(name) for name in (train_name, test_name)}
    classes = list(MetadataCatalog.get(train_name).get("thing_classes", []))
    test_classes = list(MetadataCatalog.get(test_name).get("thing_classes", []))
    if not classes:
        raise ValueError(f"probe box set {train_name!r}: its metadata has no thing_classes")
    if classes != test_classes:
        raise ValueError(
            f"probe box sets {train_name!r} and {test_name!r} have different classes: "
            f"{classes} vs {test_classes}"
        )
    splits = []
    for name, (records, skipped) in loaded.items():
        per_class = Counter(int(label) for r in records for label in r["labels"])
        empty = [c for i, c in enumerate(classes) if not per_class[i]]
        split = BoxSplit(records, min_size, max_size, name=f"probe box set {name}")
        logger.info(
            "probe box set %s: %d images, %d boxes; left out: %s; %d classes without boxes%s",
            name,
            len(split),
            split.num_boxes,
            ", ".join(f"{n} {what}" for what, n in skipped.items()) or "nothing",
            len(empty),
            f" ({', '.join(empty)})" if empty else "",
        )
        splits.append(split)
    check_disjoint_images(
        [r["file_name"] for r in splits[0].records], [r["file_name"] for r in splits[1].records],
        train_name, test_name,
    )  # fmt: skip
    return splits[0], splits[1], classes
