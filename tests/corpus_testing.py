"""Corpora for the data tests: one file of every kind of decode failure, and zip copies of image trees."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from soco_proposals.image_list import list_images


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels and holds none: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _jpeg(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_bad_images(folder: Path) -> dict[str, Path]:
    """One unusable image of each kind of ``soco_proposals.image_io.DECODE_FAILURES`` except ``unreadable``
    (which needs a missing file), named ``bad_<kind>.<ext>``; returns ``{kind: path}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sixteen_bit = io.BytesIO()
    Image.fromarray((np.arange(40 * 48).reshape(40, 48) * 30).astype(np.uint16)).save(sixteen_bit, "PNG")
    contents = {
        "decompression_bomb": ("png", png_header_only(20000, 10000)),  # 200 Mpx > 2 x MAX_IMAGE_PIXELS
        "empty_file": ("jpg", b""),
        "not_an_image": ("jpg", b"this is a text file with a .jpg name"),
        "truncated": ("jpg", _jpeg(1)[:300]),
        "unsupported_mode": ("png", sixteen_bit.getvalue()),
    }
    paths = {}
    for kind, (extension, data) in contents.items():
        paths[kind] = folder / f"bad_{kind}.{extension}"
        paths[kind].write_bytes(data)
    return paths


def zip_tree(root: Path, archive: Path, compression: int = zipfile.ZIP_STORED, with_map: bool = True) -> Path:
    """Zip every file under ``root`` with paths relative to it (class folders at the zip's root), and (with
    ``with_map``) write ``<stem>_map.txt`` beside the archive listing the images in the folder listing's
    order with a label, the original's layout.
    """
    members = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    with zipfile.ZipFile(archive, "w", compression=compression) as zf:
        for name in members:
            zf.write(root / name, name)
    if with_map:
        names = list_images(root).names
        archive.with_name(f"{archive.stem}_map.txt").write_text("".join(f"{name}\t0\n" for name in names))
    return archive
