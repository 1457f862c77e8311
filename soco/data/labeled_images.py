"""Labelled images for linear classification: ImageFolder trees and the ImageNet ``train.zip`` / ``val.zip``.

Layouts (the pretraining's, :func:`soco_proposals.image_list.list_images`, plus labels):

* a folder ``<root>/<class>/**/<image>`` (torchvision's ImageFolder): the class is the first folder;
* a zip archive with the class folders at its root (``train.zip``), or a ``train_map.txt``: the class is the
  first folder of each listed path, unless the map file (``<stem>_map.txt`` beside ``<stem>.zip``) gives an
  integer label after the path, as the ImageNet ``val_map.txt`` of the original SoCo / Swin layout does
  (``ILSVRC2012_val_00000001.JPEG<TAB>65``): then that integer is the class index.

Images are read by the pretraining's decoder (:func:`soco_proposals.image_io.decode_rgb`); a training image
that cannot be decoded is replaced and counted as in pretraining (:class:`soco.data.build.PretrainDataset`),
a validation image is counted and left out of the accuracy (its sample says which failure it was).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import find_classes, make_dataset

from soco_proposals.image_io import DECODE_FAILURES, ImageDecodeError, decode_rgb
from soco_proposals.image_list import (
    IMAGE_EXTENSIONS,
    ImageList,
    is_zip_root,
    list_images,
    map_file_of_archive,
)
from soco_proposals.packed_strings import PackedStrings

from .build import PretrainDataset

__all__ = [
    "CenterCropDataset",
    "LabeledImages",
    "LabeledTrainDataset",
    "RandomResizedCropFlip",
    "center_crop",
    "list_labeled_images",
    "match_classes",
]

logger = logging.getLogger(__name__)

#: ``failure`` of a validation sample that was decoded (else the column of its kind in DECODE_FAILURES)
DECODED = -1


@dataclass
class LabeledImages:
    """Images and their classes: ``labels[i]`` indexes ``classes``; ``from_map`` names the map file whose
    integer labels were used ("" when the classes are folder names)."""

    images: ImageList
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    root: str
    from_map: str = ""


def _map_file(root: Path) -> Path | None:
    if is_zip_root(root):
        candidate = map_file_of_archive(root)
        return candidate if candidate.is_file() else None
    return root if root.is_file() else None


def _map_labels(map_file: Path) -> dict[str, str]:
    """``{normalised path: label}`` of the lines of a map file that carry a label after the path."""
    labels = {}
    for line in map_file.read_text().splitlines():
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) >= 2 and fields[1].strip():
            labels[os.path.normpath(fields[0].strip())] = fields[1].strip()
    return labels


def _first_folder(name: str, root: object) -> str:
    parts = Path(name).parts
    if len(parts) < 2:
        raise ValueError(
            f"{root}: image {name!r} is not inside a class folder and has no label in a map file "
            "(expected <class>/<image>, or '<path><TAB><class index>' lines in the map file)"
        )
    return parts[0]


def _list_folder(root: Path) -> ImageList:
    """An ImageFolder tree as an ImageList (torchvision's listing: classes sorted, files sorted in each)."""
    _, class_to_idx = find_classes(str(root))
    samples = make_dataset(str(root), class_to_idx, extensions=IMAGE_EXTENSIONS)
    names = [os.path.relpath(path, root) for path, _ in samples]
    return ImageList(os.path.abspath(root), PackedStrings.from_strings(names))


def list_labeled_images(root: str | os.PathLike) -> LabeledImages:
    """The labelled images of ``root`` (see the module docstring); errors name the root and the image."""
    root = Path(root)
    if not str(root) or not root.exists():
        raise FileNotFoundError(f"labelled image root {str(root)!r} does not exist")
    images = _list_folder(root) if root.is_dir() else list_images(root)
    map_file = None if root.is_dir() else _map_file(root)
    mapped = _map_labels(map_file) if map_file is not None else {}
    if mapped:
        missing = [name for name in images.names if os.path.normpath(name) not in mapped]
        if missing:
            raise ValueError(
                f"{map_file}: {len(missing)} of {len(images)} images have no label, e.g. {missing[0]!r} "
                "(give every line a label, or none to use the class folders)"
            )
        try:
            labels = np.array([int(mapped[os.path.normpath(name)]) for name in images.names], dtype=np.int64)
        except ValueError as error:
            raise ValueError(f"{map_file}: labels must be integer class indices ({error})") from None
        if labels.min() < 0:
            raise ValueError(f"{map_file}: negative class index {int(labels.min())}")
        classes = [str(index) for index in range(int(labels.max()) + 1)]
        return LabeledImages(images, labels, classes, str(root), from_map=str(map_file))
    names = [_first_folder(name, root) for name in images.names]
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    return LabeledImages(images, labels, classes, str(root))


def match_classes(train: LabeledImages, val: LabeledImages) -> LabeledImages:
    """``val`` with its labels expressed in ``train``'s class indices; an error when they cannot be.

    Both splits must label the same way (class folders, or integer labels of map files), and every
    validation class must occur in training.
    """
    if bool(train.from_map) != bool(val.from_map):
        how = {True: "integer labels of a map file", False: "class folder names"}
        raise ValueError(
            f"the training images ({train.root}) are labelled by {how[bool(train.from_map)]}, the "
            f"validation images ({val.root}) by {how[bool(val.from_map)]}: label both the same way"
        )
    if train.from_map:
        unknown = sorted(set(val.labels.tolist()) - set(train.labels.tolist()))
        if unknown:
            raise ValueError(f"{val.from_map}: class indices {unknown[:5]} never occur in {train.from_map}")
        return val
    unknown = sorted(set(val.classes) - set(train.classes))
    if unknown:
        raise ValueError(
            f"validation classes {unknown[:5]} ({len(unknown)} in all) of {val.root} have no training "
            f"images in {train.root}"
        )
    index = {name: i for i, name in enumerate(train.classes)}
    remap = np.array([index[name] for name in val.classes], dtype=np.int64)
    return LabeledImages(val.images, remap[val.labels], list(train.classes), val.root)


class RandomResizedCropFlip:
    """The training augmentation of the linear protocol: ``RandomResizedCrop(size, scale)`` and a horizontal
    flip with probability 0.5, drawn from torch's global generator (seeded per sample by the dataset).

    Called as a view generator, ``gen(image, proposals)`` -> ``{"image": (3, size, size) uint8}``.
    """

    def __init__(self, size: int, scale: Sequence[float]):
        self.transform = T.Compose([T.RandomResizedCrop(size, scale=tuple(scale)), T.RandomHorizontalFlip()])

    def __call__(self, image: Image.Image, proposals: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        return {"image": TF.pil_to_tensor(self.transform(image))}


def center_crop(image: Image.Image, resize: int, size: int) -> torch.Tensor:
    """The evaluation view: short side resized to ``resize`` (bilinear), centre ``size`` x ``size`` crop
    -> (3, size, size) uint8."""
    return TF.pil_to_tensor(TF.center_crop(TF.resize(image, resize), size))


class LabeledTrainDataset(PretrainDataset):
    """Training samples ``{"image", "label", "image_index", "skipped_images"}`` indexed by
    ``(dataset_index, stream_position)``; the label is that of the image actually used (a replacement's,
    when the drawn image could not be decoded)."""

    def __init__(self, data: LabeledImages, view_generator: RandomResizedCropFlip, seed: int):
        super().__init__(data.images, None, view_generator, seed)
        self.labels = data.labels

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(item)
        sample["label"] = torch.tensor(self.labels[int(sample["image_index"])], dtype=torch.int64)
        return sample


class CenterCropDataset(Dataset):
    """Evaluation samples ``{"image", "label", "image_index", "failure"}``, one per image, no replacement:
    an image that cannot be decoded gives a zero image and ``failure`` = its kind's column of
    :data:`DECODE_FAILURES` (:data:`DECODED` otherwise); each bad path is logged once per process."""

    def __init__(self, data: LabeledImages, resize: int, size: int):
        self.data = data
        self.resize = resize
        self.size = size
        self._logged: set[int] = set()

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.data.images[index]
        failure = DECODED
        try:
            image = center_crop(decode_rgb(record), self.resize, self.size)
        except ImageDecodeError as error:
            failure = DECODE_FAILURES.index(error.kind)
            image = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
            if index not in self._logged:
                self._logged.add(index)
                logger.warning("left out unreadable image %s (%s: %s)", record.path, error.kind, error.reason)
        return {
            "image": image,
            "label": torch.tensor(self.data.labels[index], dtype=torch.int64),
            "image_index": torch.tensor(index, dtype=torch.int64),
            "failure": torch.tensor(failure, dtype=torch.int64),
        }
