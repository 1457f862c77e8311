"""Atomic writes: a file or folder appears at its final path complete, or not at all.

Every writer of the toolbox that produces a result a later run relies on (proposal chunks and stores,
filtered JSON, converted checkpoints, the demo's datasets) goes through these helpers: the content is
written next to the destination under a temporary name and renamed into place, so a killed job never
leaves a half-written file that a resumed job would take for finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_directory", "atomic_write", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then rename it to ``path``.

    The parent folder is created if needed; on any error the temporary file is removed and the error
    re-raised, leaving an existing ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write ``lines`` (newline-terminated, UTF-8) to ``path`` atomically, streaming them."""
    return atomic_write(path, lambda f: f.writelines(line.encode("utf-8") for line in lines))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; it becomes ``path`` when the block exits cleanly.

    An existing ``path`` is an error unless ``overwrite``; it is then swapped out and deleted only after the
    new folder is in place. On error the temporary folder is deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp_dir
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp_dir, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp_dir, path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file's content."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
