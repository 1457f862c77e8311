"""Random access to the images of a zip archive: the original SoCo's ``train.zip`` input.

``zipfile.ZipFile`` builds one ``ZipInfo`` object per member when it opens an archive: for ImageNet's
1.28M members that is seconds per process and hundreds of MiB in every DataLoader worker (the original
``ZipReader`` kept one such object per worker and zip). Here the member table is read once, when the corpus
is listed, and kept as numbers (:class:`soco_proposals.image_list.ImageList` holds them in numpy arrays, the
corpus index on disk); a member is then read with two ``pread`` calls on a file descriptor that each process
opens itself on first use, so a forked worker never uses its parent's handle.

Members must be stored (``zip -0``, the usual choice for JPEGs) or deflated; encrypted members are refused.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass

STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
SUPPORTED_METHODS = (STORED, DEFLATED)
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (version .. sizes), name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"

#: archive path -> (pid that opened it, file descriptor)
_HANDLES: dict[str, tuple[int, int]] = {}


@dataclass(frozen=True)
class ZipMember:
    """Where one member's bytes lie in its archive (offsets from the central directory)."""

    archive: str
    header_offset: int
    compressed_size: int
    method: int


def member_table(archive: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """``{name: (header_offset, compressed_size, method)}`` of every file member (directories left out).

    Raises ``ValueError`` naming the member when one is encrypted or compressed with a method other than
    stored or deflated.
    """
    table = {}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise ValueError(
                    f"{archive}: member {info.filename} is encrypted; image archives must not be"
                )
            if info.compress_type not in SUPPORTED_METHODS:
                raise ValueError(
                    f"{archive}: member {info.filename} uses compression method {info.compress_type}; "
                    "store images (zip -0) or deflate them"
                )
            table[info.filename] = (info.header_offset, info.compress_size, info.compress_type)
    return table


def _descriptor(archive: str) -> int:
    """This process's read-only descriptor of ``archive``, opened on first use (also after a fork)."""
    pid = os.getpid()
    entry = _HANDLES.get(archive)
    if entry is not None and entry[0] == pid:
        return entry[1]
    if entry is not None:  # inherited from the parent process: close our copy, never read through it
        os.close(entry[1])
    descriptor = os.open(archive, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    _HANDLES[archive] = (pid, descriptor)
    return descriptor


def read_member(member: ZipMember) -> bytes:
    """The uncompressed bytes of one member; ``zipfile.BadZipFile`` when the archive does not match."""
    descriptor = _descriptor(member.archive)
    header = os.pread(descriptor, _LOCAL_HEADER.size, member.header_offset)
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(
            f"{member.archive}: no local file header at offset {member.header_offset}; "
            "the archive changed since it was indexed"
        )
    _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    start = member.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    data = os.pread(descriptor, member.compressed_size, start)
    if len(data) != member.compressed_size:
        raise zipfile.BadZipFile(f"{member.archive}: member at offset {member.header_offset} is cut short")
    if member.method == STORED:
        return data
    if member.method == DEFLATED:
        return zlib.decompress(data, -zlib.MAX_WBITS)
    raise ValueError(f"{member.archive}: unsupported compression method {member.method}")
