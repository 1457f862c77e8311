"""Enumerate the images of an unlabeled corpus.

Three input layouts are accepted, all through :func:`list_images`:

* an ImageNet-style tree (``train/<wnid>/<name>.JPEG``) or any folder of images, searched recursively;
* a ``train_map.txt`` file as used by the original SoCo code: one image per line, the path relative to
  the file's folder, optionally followed by a TAB (or whitespace) and a label, which is ignored.

Every image is identified by its *key*: the file name up to the first ``.``, exactly as the SoCo
proposal JSON names images (``n01440764_10026.JPEG`` -> ``n01440764_10026``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageRecord:
    """One image of the corpus: its absolute path and its SoCo key."""

    path: str
    key: str


def image_key(path: str) -> str:
    """SoCo key of an image path: the base name up to the first dot."""
    return os.path.basename(path).split(".")[0]


def _walk_folder(root: Path) -> list[str]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(dirpath, name))
    return paths


def _read_map_file(map_file: Path) -> list[str]:
    base = map_file.parent
    paths = []
    for line_no, line in enumerate(map_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        rel = line.split("\t")[0].split()[0] if "\t" in line else line.split()[0]
        if not rel.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(
                f"{map_file}:{line_no}: expected an image path (with an image extension) "
                f"as the first field, got {rel!r}"
            )
        paths.append(str(base / rel))
    return paths


def list_images(root: str | os.PathLike) -> list[ImageRecord]:
    """Images under ``root`` (a folder, an ImageNet tree, or a ``train_map.txt``), in a stable order.

    Raises ``FileNotFoundError`` when ``root`` does not exist, and ``ValueError`` when it holds no
    image or two images share a key (proposals are keyed by it, so keys must be unique).
    """
    if not str(root):
        raise ValueError("the image root is empty: give an image folder, an ImageNet tree or a train_map.txt")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image root {root} does not exist")
    paths = _read_map_file(root) if root.is_file() else _walk_folder(root)
    if not paths:
        raise ValueError(f"no images found under {root} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    records = [ImageRecord(path=os.path.abspath(p), key=image_key(p)) for p in paths]
    seen: dict[str, str] = {}
    for rec in records:
        if rec.key in seen:
            raise ValueError(
                f"two images under {root} share the key {rec.key!r}: {seen[rec.key]} and {rec.path}; "
                "proposals are keyed by the file name up to the first '.', so keys must be unique"
            )
        seen[rec.key] = rec.path
    return records
