"""Decode a corpus image as RGB, or say precisely why it cannot be: the one decoder of training and proposals.

A failure is an :class:`ImageDecodeError` whose ``kind`` is one of :data:`DECODE_FAILURES`:

======================  =====================================================================================
``decompression_bomb``  more than 2 x ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (PIL's ``DecompressionBombError``)
``empty_file``          zero bytes
``not_an_image``        PIL recognises no image format in the bytes
``truncated``           an image format is recognised but the file is cut short or corrupt
``unsupported_mode``    no faithful 8-bit RGB conversion: high bit depth or float grayscale (PIL clips such
                        values to 0..255 when converting, a 16-bit photo turns white) or a mode PIL cannot
                        convert at all
``unreadable``          the file cannot be read (missing, permissions, I/O error, zip member out of place)
======================  =====================================================================================
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from typing import IO

from PIL import Image, UnidentifiedImageError

from .image_list import ImageRecord
from .zip_archive import read_member

DECODE_FAILURES = (
    "decompression_bomb",
    "empty_file",
    "not_an_image",
    "truncated",
    "unsupported_mode",
    "unreadable",
)
#: Modes whose conversion to RGB is not a faithful 8-bit picture (values are clipped, not scaled).
UNSUPPORTED_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class ImageDecodeError(Exception):
    """An image that cannot be used: ``kind`` (one of :data:`DECODE_FAILURES`), ``path`` and the reason."""

    def __init__(self, kind: str, path: str, reason: str):
        super().__init__(f"{kind}: {reason} ({path})")
        self.kind = kind
        self.path = path
        self.reason = reason


def _open_source(source: ImageRecord | str) -> tuple[str, IO[bytes] | str]:
    """(path for messages, file path or in-memory bytes PIL opens)."""
    if isinstance(source, str):
        path = source
        if os.path.getsize(path) == 0:
            raise ImageDecodeError("empty_file", path, "the file has zero bytes")
        return path, path
    path = source.path
    if source.member is None:
        return _open_source(path)
    data = read_member(source.member)
    if not data:
        raise ImageDecodeError("empty_file", path, "the zip member has zero bytes")
    return path, io.BytesIO(data)


@contextlib.contextmanager
def _recorded_warnings(record: bool) -> Iterator[list]:
    """Collect the warnings raised inside (for notes), or let them through unchanged."""
    if not record:
        yield []
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def decode_rgb(source: ImageRecord | str, notes: list[str] | None = None) -> Image.Image:
    """Fully decoded RGB image of a record (file or zip member) or file path.

    Conversions (grayscale, palette, CMYK, RGBA -> RGB, alpha dropped as the original SoCo did) are made and,
    like a non-JPEG format or PIL warnings, appended to ``notes`` when given (``"mode:CMYK->RGB"``).
    Raises :class:`ImageDecodeError`.
    """
    path = source if isinstance(source, str) else source.path
    try:
        path, opened = _open_source(source)
    except ImageDecodeError:
        raise
    except Exception as error:  # missing file, permissions, I/O error, zip member not where indexed
        raise ImageDecodeError("unreadable", path, f"{type(error).__name__}: {error}") from None
    stage = "truncated"
    try:
        with _recorded_warnings(notes is not None) as caught, Image.open(opened) as image:
            image.load()
            mode, file_format = image.mode, image.format
            stage = "unsupported_mode"
            if mode in UNSUPPORTED_MODES:
                raise ImageDecodeError(stage, path, f"mode {mode} has no faithful 8-bit RGB conversion")
            rgb = image if mode == "RGB" else image.convert("RGB")
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError("decompression_bomb", path, str(error)) from None
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not_an_image", path, str(error)) from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, zlib/struct errors ...
        # an OSError with an errno comes from the operating system, PIL's own have none
        kind = "unreadable" if isinstance(error, OSError) and error.errno is not None else stage
        raise ImageDecodeError(kind, path, f"{type(error).__name__}: {error}") from None
    if notes is not None:
        if file_format != "JPEG":
            notes.append(f"format:{file_format}")
        if mode != "RGB":
            notes.append(f"mode:{mode}->RGB")
        notes.extend(f"warning:{w.message}".replace(";", ",") for w in caught)
    return rgb
