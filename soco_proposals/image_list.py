"""Enumerate the images of an unlabeled corpus, and hold the list in numpy arrays.

Three input layouts are accepted, all through :func:`list_images`:

* an ImageNet-style tree (``train/<wnid>/<name>.JPEG``) or any folder of images, searched recursively;
* a ``train_map.txt`` file as used by the original SoCo code: one image per line, the path relative to
  the file's folder, optionally followed by a TAB (or whitespace) and a label, which is ignored;
* a zip archive, the original SoCo's required input: ``<data_dir>/train.zip`` with the class folders at
  its root, and the images listed by ``train_map.txt`` beside it (``<stem>_map.txt`` for ``<stem>.zip``);
  without that file, every image member of the archive, sorted by name.

Every image is identified by its *key*: the file name up to the first ``.``, exactly as the SoCo
proposal JSON names images (``n01440764_10026.JPEG`` -> ``n01440764_10026``), so a folder, its map file
and its zip give the same keys and the same proposals serve all three.

The list is an :class:`ImageList`: the relative paths in one byte buffer (see :mod:`.packed_strings`),
the zip members' locations in an integer array, and an :class:`ImageRecord` made on access, so that
DataLoader workers share it instead of copying a million Python objects each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .packed_strings import PackedStrings
from .zip_archive import ZipMember, member_table

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
ZIP_PATH_SEPARATOR = "@/"  # "<archive>.zip@/<member>", the original ZipReader's notation


@dataclass(frozen=True)
class ImageRecord:
    """One image of the corpus: its path and its SoCo key.

    ``path`` is a file, or ``<archive>.zip@/<member>`` for a zip member, whose bytes ``member`` locates.
    """

    path: str
    key: str
    member: ZipMember | None = None


@dataclass(frozen=True)
class SourceStamp:
    """A file or folder a listing was read from, with its size and modification time then.

    A folder's modification time changes when an entry is added, removed or renamed in it, so the stamps
    of every folder of a tree tell whether a listing of the tree is still current without walking it.
    """

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> SourceStamp:
        stat = os.stat(path)
        return cls(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)

    def changed(self) -> str:
        """Why the source no longer matches the stamp ("" when it does)."""
        try:
            now = SourceStamp.of(self.path)
        except FileNotFoundError:
            return f"{self.path} no longer exists"
        if now != self:
            return (
                f"{self.path} was modified (size {self.size} -> {now.size}, "
                f"mtime_ns {self.mtime_ns} -> {now.mtime_ns})"
            )
        return ""


def image_key(path: str) -> str:
    """SoCo key of an image path: the base name up to the first dot."""
    return os.path.basename(path).split(".")[0]


def is_zip_root(root: str | os.PathLike) -> bool:
    return str(root).lower().endswith(".zip")


def map_file_of_archive(archive: str | os.PathLike) -> Path:
    """``train.zip`` -> ``train_map.txt`` beside it (the original SoCo's pairing)."""
    archive = Path(archive)
    return archive.with_name(f"{archive.stem}_map.txt")


class ImageList(Sequence[ImageRecord]):
    """The images of a corpus in a stable order, without a Python object per image.

    ``base``: the folder the names are relative to (the walked folder, the map file's folder) or the zip
    archive; ``names``: relative paths or member names; ``members``: for a zip, int64 (n, 3) rows of
    (header offset, compressed size, compression method), else None.
    """

    def __init__(self, base: str, names: PackedStrings, members: np.ndarray | None = None):
        if members is not None and members.shape != (len(names), 3):
            raise ValueError(f"zip member table of shape {members.shape} for {len(names)} names")
        self.base = base
        self.names = names
        self.members = members

    @property
    def is_zip(self) -> bool:
        return self.members is not None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        name = self.names[index]
        if self.members is None:
            return ImageRecord(os.path.join(self.base, name), image_key(name))
        offset, size, method = (int(v) for v in self.members[index])
        member = ZipMember(self.base, offset, size, method)
        return ImageRecord(f"{self.base}{ZIP_PATH_SEPARATOR}{name}", image_key(name), member)

    def __iter__(self) -> Iterator[ImageRecord]:
        for index in range(len(self)):
            yield self[index]

    def subset(self, indices: np.ndarray) -> ImageList:
        """The images at ``indices`` (int or bool array), in that order."""
        indices = np.flatnonzero(indices) if indices.dtype == bool else indices
        members = None if self.members is None else self.members[indices]
        return ImageList(self.base, self.names.take(indices), members)

    def key_array(self) -> np.ndarray:
        """(n,) ``S<L>`` array of the UTF-8 keys, vectorised (no per-image Python call)."""
        return self.names.fixed_width(*self.names.key_spans())

    def __repr__(self) -> str:
        kind = "zip members" if self.is_zip else "images"
        return f"ImageList({len(self)} {kind} of {self.base!r})"


def _walk_folder(root: str) -> tuple[list[str], list[SourceStamp]]:
    """Image paths under ``root`` relative to it, in ``os.walk`` order (top-down, sorted names, links
    followed), and the stamp of every folder, taken before the folder is read.
    """
    names: list[str] = []
    stamps: list[SourceStamp] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        folder = os.path.join(root, relative) if relative else root
        stamps.append(SourceStamp.of(folder))
        files, subfolders = [], []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    (subfolders if entry.is_dir() else files).append(entry.name)
        except OSError as error:
            raise OSError(f"cannot list {folder} while listing the images under {root}: {error}") from error
        prefix = f"{relative}/" if relative else ""
        names.extend(prefix + name for name in sorted(files) if name.lower().endswith(IMAGE_EXTENSIONS))
        pending.extend(prefix + name for name in sorted(subfolders, reverse=True))
    return names, stamps


def _read_map_file(map_file: Path) -> list[str]:
    names = []
    for line_no, line in enumerate(map_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        relative = line.split("\t")[0].split()[0] if "\t" in line else line.split()[0]
        if not relative.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(
                f"{map_file}:{line_no}: expected an image path (with an image extension) "
                f"as the first field, got {relative!r}"
            )
        names.append(os.path.normpath(relative))
    return names


def _walk_order(name: str) -> tuple:
    """Sort key putting member names in the order :func:`_walk_folder` lists the extracted tree: in each
    folder its files first, then its subfolders, each sorted by name.
    """
    *folders, file_name = name.split("/")
    return (*((1, folder) for folder in folders), (0, file_name))


def _list_zip(archive: Path) -> tuple[list[str], np.ndarray, list[SourceStamp]]:
    table = member_table(archive)
    map_file = map_file_of_archive(archive)
    stamps = [SourceStamp.of(archive)]
    if map_file.is_file():
        stamps.append(SourceStamp.of(map_file))
        names = _read_map_file(map_file)
        missing = [name for name in names if name not in table]
        if missing:
            raise ValueError(
                f"{len(missing)} images listed in {map_file} are not members of {archive}, "
                f"e.g. {missing[0]!r} "
                "(member names are paths inside the archive, class folders at its root)"
            )
    else:
        names = sorted((name for name in table if name.lower().endswith(IMAGE_EXTENSIONS)), key=_walk_order)
    members = np.array([table[name] for name in names], dtype=np.int64).reshape(len(names), 3)
    return names, members, stamps


def check_unique_keys(images: ImageList, origin: object) -> None:
    """Raise ``ValueError`` naming two images when keys repeat (proposals are keyed by them)."""
    keys = images.key_array()
    order = np.argsort(keys, kind="stable")
    repeats = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if len(repeats):
        first, second = images[int(order[repeats[0]])], images[int(order[repeats[0] + 1])]
        raise ValueError(
            f"two images under {origin} share the key {first.key!r}: {first.path} and {second.path}; "
            "proposals are keyed by the file name up to the first '.', so keys must be unique"
        )


def list_corpus(root: str | os.PathLike) -> tuple[ImageList, list[SourceStamp]]:
    """The images under ``root`` (see :func:`list_images`) and the stamps of what the listing read."""
    if not str(root):
        raise ValueError(
            "the image root is empty: give an image folder, an ImageNet tree, a train_map.txt or a zip"
        )
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image root {root} does not exist")
    base, members = os.path.abspath(root), None
    if root.is_dir():
        names, stamps = _walk_folder(base)
    elif is_zip_root(root):
        names, members, stamps = _list_zip(root)
    else:
        names, stamps = _read_map_file(root), [SourceStamp.of(root)]
        base = os.path.dirname(base)
    if not names:
        raise ValueError(f"no images found under {root} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    images = ImageList(base, PackedStrings.from_strings(names), members)
    check_unique_keys(images, root)
    return images, stamps


def list_images(root: str | os.PathLike) -> ImageList:
    """Images under ``root`` (a folder, an ImageNet tree, a ``train_map.txt`` or a zip), in a stable order.

    Raises ``FileNotFoundError`` when ``root`` does not exist, and ``ValueError`` when it holds no
    image or two images share a key (proposals are keyed by it, so keys must be unique).
    """
    return list_corpus(root)[0]
