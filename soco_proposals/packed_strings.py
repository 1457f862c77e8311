"""Many strings in two numpy arrays: one UTF-8 byte buffer and the offsets of the strings in it.

A Python list of a million strings (or of records holding them) is a million objects with reference counts;
a DataLoader worker forked from the trainer writes to those counts as soon as it reads an item, so the
kernel copies every page it touches and each worker ends up with a private copy of the whole list
(hundreds of MiB for ImageNet). Two numpy arrays have no per-item objects: workers share their pages.
This is what Detectron2's ``NumpySerializedList`` does for dataset dicts (pickled items); for strings,
plain UTF-8 is smaller and lets keys be extracted with vectorised numpy instead of one call per item.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

_NEWLINE = ord("\n")
_SLASH = ord("/")
_DOT = ord(".")
_CHUNK = 1 << 16


class PackedStrings(Sequence[str]):
    """An immutable sequence of strings: item i is ``buffer[starts[i]:ends[i]]`` decoded as UTF-8.

    ``buffer``: uint8 (B,), e.g. the text of a file, separators included; ``starts``, ``ends``: int64 (n,).
    """

    def __init__(self, buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        self.buffer = buffer
        self.starts = starts
        self.ends = ends

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> PackedStrings:
        """Pack strings that contain no newline."""
        return cls.from_lines("".join(f"{string}\n" for string in strings).encode("utf-8"), strip_empty=False)

    @classmethod
    def from_lines(cls, data: bytes | np.ndarray, strip_empty: bool = True) -> PackedStrings:
        """The lines of ``data`` (uint8 array or bytes), without their newlines; no copy of the text is made.

        A final newline ends the last line (it does not start an empty one). With ``strip_empty`` (the
        default) empty lines are dropped.
        """
        buffer = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
        breaks = np.flatnonzero(buffer == _NEWLINE)
        starts = np.concatenate([[0], breaks + 1]).astype(np.int64)
        ends = np.concatenate([breaks, [len(buffer)]]).astype(np.int64)
        keep = (
            ends > starts
            if strip_empty
            else np.arange(len(starts)) < len(starts) - (starts[-1] == len(buffer))
        )
        return cls(buffer, starts[keep], ends[keep])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return PackedStrings(self.buffer, self.starts[index], self.ends[index])
        return self.buffer[self.starts[index] : self.ends[index]].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for index in range(len(self)):
            yield self[index]

    def take(self, indices: np.ndarray) -> PackedStrings:
        """The items at ``indices`` (sharing this buffer)."""
        return PackedStrings(self.buffer, self.starts[indices], self.ends[indices])

    def as_lines(self) -> Iterator[bytes]:
        """The items as newline-terminated UTF-8 lines, in blocks: one slice of the buffer when the items
        are its consecutive lines (a listing, an index just read), else one block per item.
        """
        consecutive = len(self) > 0 and bool(
            (self.starts[1:] == self.ends[:-1] + 1).all() and (self.buffer[self.ends[:-1]] == _NEWLINE).all()
        )
        if consecutive:
            yield self.buffer[self.starts[0] : self.ends[-1]].tobytes() + b"\n"
            return
        for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            yield self.buffer[start:end].tobytes() + b"\n"

    def lengths(self) -> np.ndarray:
        """(n,) int64 byte length of every item."""
        return self.ends - self.starts

    def key_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Byte span of every item's SoCo key: the base name (after the last ``/``) up to its first ``.``.

        Vectorised over the buffer (UTF-8 never uses the bytes of ``/`` and ``.`` inside a multi-byte
        character). Returns ``(starts, ends)``, both (n,) int64.
        """
        slashes = np.flatnonzero(self.buffer == _SLASH)
        last = np.searchsorted(slashes, self.ends) - 1
        has_slash = last >= 0
        last_slash = np.where(has_slash, slashes[np.maximum(last, 0)] if len(slashes) else 0, -1)
        base = np.where(has_slash & (last_slash >= self.starts), last_slash + 1, self.starts)
        dots = np.flatnonzero(self.buffer == _DOT)
        first = np.searchsorted(dots, base)
        first_dot = dots[np.minimum(first, len(dots) - 1)] if len(dots) else self.ends
        key_end = np.where((first < len(dots)) & (first_dot < self.ends), first_dot, self.ends)
        return base.astype(np.int64), key_end.astype(np.int64)

    def fixed_width(self, starts: np.ndarray | None = None, ends: np.ndarray | None = None) -> np.ndarray:
        """Items (or the sub-spans ``starts:ends`` of them) as a NumPy bytes array ``S<longest>`` (n,).

        Built in chunks, so the temporary index arrays stay small for millions of items.
        """
        starts = self.starts if starts is None else starts
        ends = self.ends if ends is None else ends
        lengths = ends - starts
        width = max(int(lengths.max(initial=0)), 1)
        out = np.zeros((len(starts), width), dtype=np.uint8)
        columns = np.arange(width)
        padded = np.concatenate([self.buffer, np.zeros(width, dtype=np.uint8)])
        for first in range(0, len(starts), _CHUNK):
            rows = slice(first, first + _CHUNK)
            chunk = padded[starts[rows, None] + columns]
            chunk[columns >= lengths[rows, None]] = 0
            out[rows] = chunk
        return out.view(f"S{width}").reshape(len(starts))

    def nbytes(self) -> int:
        """Memory held by the arrays (the buffer may be shared with other sequences)."""
        return self.buffer.nbytes + self.starts.nbytes + self.ends.nbytes
