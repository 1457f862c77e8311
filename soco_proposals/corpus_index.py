"""The corpus index: the image list of a corpus written once, read by every rank and every later run.

Walking ImageNet's 1,281,167 files takes seconds on a local disk and minutes on NFS, and every rank of every
node would do it again at each start. The index is a ``train_map.txt``-like text file: a header of ``#``
lines, then one image per line, its path relative to the corpus (for a zip: its member name followed by
the member's location, fixed-width, so the file is parsed without a Python object per line)::

    # soco-corpus-index 1
    # root	/data/imagenet/train
    # layout	folder
    # count	1281167
    # stamp	4096	1700000000000000000	/data/imagenet/train
    # stamp	69632	1700000000000000000	/data/imagenet/train/n01440764
    ...
    n01440764/n01440764_10026.JPEG
    ...

A zip line is ``<member>\\t<header offset, 15 digits>\\t<compressed size, 12 digits>\\t<method, 3 digits>``.

The ``stamp`` lines (size, modification time, path) are the files and folders the listing was read from:
every folder of a tree (a folder's time changes when an entry is added, removed or renamed in it), the map
file, the archive. Reading the index checks the root, the count and every stamp, which costs one ``stat``
per folder; a mismatch is a :class:`StaleCorpusIndexError` saying how to rebuild the index. The index is
never rebuilt silently, and it is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .fileio import atomic_write
from .image_list import ImageList, SourceStamp, is_zip_root, list_corpus
from .packed_strings import PackedStrings

INDEX_FORMAT = "soco-corpus-index"
INDEX_VERSION = 1
_OFFSET_DIGITS, _SIZE_DIGITS, _METHOD_DIGITS = 15, 12, 3
_ZIP_SUFFIX = 3 + _OFFSET_DIGITS + _SIZE_DIGITS + _METHOD_DIGITS  # three TABs and the digits


class StaleCorpusIndexError(ValueError):
    """The corpus index does not describe the corpus (any more)."""


class IncompleteCorpusIndexError(StaleCorpusIndexError):
    """The corpus index is empty, its header incomplete or its image lines fewer or more than its count: cut
    short, edited, or not yet fully visible to this machine (a network file system's caches)."""


def rebuild_hint(root: str | os.PathLike, index: str | os.PathLike) -> str:
    return (
        f"rebuild it with `python tools/build_corpus_index.py --image-root {root} --output {index} "
        "--overwrite` "
        "(or delete it and the next run writes it again)"
    )


def layout_of(root: str | os.PathLike) -> str:
    """``folder``, ``zip`` or ``map`` (a train_map.txt)."""
    if Path(root).is_dir():
        return "folder"
    return "zip" if is_zip_root(root) else "map"


def _index_blocks(root: str, images: ImageList, stamps: list[SourceStamp]) -> Iterator[bytes]:
    header = [
        f"# {INDEX_FORMAT} {INDEX_VERSION}\n",
        f"# root\t{os.path.abspath(root)}\n",
        f"# layout\t{layout_of(root)}\n",
        f"# count\t{len(images)}\n",
        *(f"# stamp\t{stamp.size}\t{stamp.mtime_ns}\t{stamp.path}\n" for stamp in stamps),
    ]
    yield "".join(header).encode("utf-8")
    if images.members is None:
        yield from images.names.as_lines()
        return
    line = f"{{}}\t{{:0{_OFFSET_DIGITS}d}}\t{{:0{_SIZE_DIGITS}d}}\t{{:0{_METHOD_DIGITS}d}}\n"
    for name, (offset, size, method) in zip(images.names, images.members.tolist(), strict=True):
        yield line.format(name, offset, size, method).encode("utf-8")


def write_corpus_index(
    root: str | os.PathLike, path: str | os.PathLike, overwrite: bool = False
) -> ImageList:
    """List the corpus under ``root`` (see :func:`soco_proposals.image_list.list_images`) and write its index
    to ``path`` atomically; returns the listing. An existing index is an error unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"corpus index {path} already exists (overwrite it to rebuild it)")
    images, stamps = list_corpus(root)
    atomic_write(path, lambda f: f.writelines(_index_blocks(str(root), images, stamps)))
    return images


def _read_header(data: bytes, path: Path) -> tuple[dict[str, str], list[SourceStamp], int]:
    """Header fields, stamps, and the byte offset where the image lines start."""
    if not data:
        raise IncompleteCorpusIndexError(f"corpus index {path} is empty")
    first_line = data[: data.find(b"\n")].decode("utf-8", errors="replace")
    if first_line != f"# {INDEX_FORMAT} {INDEX_VERSION}":
        raise ValueError(
            f"{path} is not a corpus index of version {INDEX_VERSION} (first line {first_line[:80]!r}); "
            "write it with tools/build_corpus_index.py"
        )
    fields: dict[str, str] = {}
    stamps = []
    position = len(first_line.encode("utf-8")) + 1
    while data.startswith(b"#", position):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        name, _, value = data[position + 2 : end].decode("utf-8").partition("\t")
        position = end + 1
        if name == "stamp":
            size, mtime_ns, stamp_path = value.split("\t", 2)
            stamps.append(SourceStamp(stamp_path, int(size), int(mtime_ns)))
        else:
            fields[name] = value
    missing = {"root", "layout", "count"} - set(fields)
    if missing:
        raise IncompleteCorpusIndexError(f"{path}: incomplete corpus index header (no {sorted(missing)})")
    return fields, stamps, position


def _parse_digits(buffer: np.ndarray, starts: np.ndarray, digits: int) -> np.ndarray:
    """(n,) int64 of the fixed-width decimal fields ``buffer[starts[i] : starts[i] + digits]``, one digit
    position at a time, in place (no (n, digits) temporary).
    """
    values = np.zeros(len(starts), dtype=np.int64)
    not_digit = np.zeros(len(starts), dtype=bool)
    position = starts.copy()
    for _ in range(digits):
        digit = buffer[position]
        not_digit |= (digit - np.uint8(ord("0"))) > 9  # uint8 arithmetic: below '0' wraps above 9
        values *= 10
        values += digit
        values -= ord("0")
        position += 1
    if not_digit.any():
        raise ValueError("a numeric field of the corpus index holds a non-digit")
    return values


def _zip_members(names: PackedStrings) -> tuple[PackedStrings, np.ndarray]:
    """Split zip lines into the member names and their (offset, size, method) table."""
    if len(names) and names.lengths().min() <= _ZIP_SUFFIX:
        raise ValueError("a zip line of the corpus index is too short")
    suffix = names.ends - _ZIP_SUFFIX  # "\t<offset>\t<size>\t<method>" starts here
    tabs = (0, 1 + _OFFSET_DIGITS, 2 + _OFFSET_DIGITS + _SIZE_DIGITS)
    if len(names) and not all((names.buffer[suffix + tab] == ord("\t")).all() for tab in tabs):
        raise ValueError("a zip line of the corpus index is not '<member>\\t<offset>\\t<size>\\t<method>'")
    offset = _parse_digits(names.buffer, suffix + tabs[0] + 1, _OFFSET_DIGITS)
    size = _parse_digits(names.buffer, suffix + tabs[1] + 1, _SIZE_DIGITS)
    method = _parse_digits(names.buffer, suffix + tabs[2] + 1, _METHOD_DIGITS)
    return PackedStrings(names.buffer, names.starts, suffix), np.stack([offset, size, method], axis=1)


def check_index_header(path: str | os.PathLike, root: str | os.PathLike) -> tuple[dict[str, str], int, bytes]:
    """Read ``path`` and check it is a current index of ``root``; returns (header, body offset, text).

    Raises ``FileNotFoundError`` when there is no index and :class:`StaleCorpusIndexError` when the root,
    the layout or a stamp differs.
    """
    path = Path(path)
    data = path.read_bytes()
    fields, stamps, body = _read_header(data, path)
    problems = []
    if fields["root"] != os.path.abspath(root):
        problems.append(f"it lists {fields['root']}, the image root is {os.path.abspath(root)}")
    elif fields["layout"] != layout_of(root):
        problems.append(f"it lists a {fields['layout']}, {root} is a {layout_of(root)}")
    else:
        problems.extend(reason for reason in (stamp.changed() for stamp in stamps) if reason)
    if problems:
        raise StaleCorpusIndexError(
            f"corpus index {path} is stale: {problems[0]}"
            + (f" (and {len(problems) - 1} more changes)" if len(problems) > 1 else "")
            + f"; {rebuild_hint(root, path)}"
        )
    return fields, body, data


def read_corpus_index(path: str | os.PathLike, root: str | os.PathLike) -> ImageList:
    """The image list of ``root`` from its index ``path``, after the checks of :func:`check_index_header`.

    The image lines are parsed with vectorised numpy into the :class:`ImageList` buffers, so reading
    ImageNet's index takes a fraction of a second.
    """
    fields, body, data = check_index_header(path, root)
    buffer = np.frombuffer(data, dtype=np.uint8)[body:]
    if len(buffer) and buffer[-1] != ord("\n"):  # the writer ends every line, the last one too
        raise IncompleteCorpusIndexError(
            f"corpus index {path} ends inside an image line: it is cut short; {rebuild_hint(root, path)}"
        )
    names = PackedStrings.from_lines(buffer)
    if len(names) != int(fields["count"]):
        raise IncompleteCorpusIndexError(
            f"corpus index {path} holds {len(names)} images, its header says {fields['count']}: "
            f"the file is cut short or was edited; {rebuild_hint(root, path)}"
        )
    members = None
    if fields["layout"] == "zip":
        names, members = _zip_members(names)
    base = fields["root"] if fields["layout"] != "map" else os.path.dirname(fields["root"])
    return ImageList(base, names, members)
