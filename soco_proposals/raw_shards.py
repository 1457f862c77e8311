"""On-disk format of raw (unfiltered) proposals: shards of atomically written chunks.

``OUTPUT/shard-<id>-of-<n>/`` holds

* ``config.json``: how the shard was made (backend, max size, chunk size, its image keys' digest);
  a re-run with other settings is refused instead of mixing outputs;
* ``chunk-<index>.npz``: ``chunk_size`` consecutive images of the shard, written through a temporary
  file and a rename, so a chunk is either complete or absent. Arrays: ``keys`` (S, UTF-8), ``sizes``
  int32 (n, 2) image (H, W) (0, 0 when the image failed), ``offsets`` int64 (n + 1,), ``boxes`` uint16
  (M, 4) xywh with w = max_x - min_x, ``errors`` (S, empty when the image succeeded), ``notes`` (S,
  ``;``-separated remarks such as a colour conversion);
* ``errors.log`` and ``summary.json``, written when every chunk is done (``summary.json`` marks the
  shard complete).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write, atomic_write_text

RAW_FORMAT = "soco-raw-proposals"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
ERROR_LOG_FILE = "errors.log"
_SHARD_PATTERN = re.compile(r"^shard-(\d+)-of-(\d+)$")
_CHUNK_PATTERN = re.compile(r"^chunk-(\d+)\.npz$")


@dataclass
class ImageProposals:
    """Raw proposals of one image: ``boxes`` uint16 (M, 4) xywh; ``error`` is empty on success."""

    key: str
    image_size: tuple[int, int]
    boxes: np.ndarray
    notes: tuple[str, ...] = ()
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


@dataclass
class ShardSummary:
    """Counts over one shard; ``failures`` and ``notes`` count each kind of error and of remark (the text
    before ':').
    """

    images: int = 0
    failed: int = 0
    boxes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, result: ImageProposals) -> None:
        self.images += 1
        self.failed += int(result.failed)
        self.boxes += len(result.boxes)
        if result.failed:
            kind = result.error.split(":")[0]
            self.failures[kind] = self.failures.get(kind, 0) + 1
        for note in result.notes:
            kind = note.split(":")[0]
            self.notes[kind] = self.notes.get(kind, 0) + 1


def shard_dir_name(shard_id: int, num_shards: int) -> str:
    return f"shard-{shard_id:05d}-of-{num_shards:05d}"


def chunk_path(shard_dir: Path, index: int) -> Path:
    return shard_dir / f"chunk-{index:06d}.npz"


def _encode(texts: Iterable[str]) -> np.ndarray:
    encoded = [text.encode("utf-8") for text in texts]
    return np.array(encoded, dtype=f"S{max((len(e) for e in encoded), default=0) or 1}")


def write_chunk(path: Path, results: list[ImageProposals]) -> None:
    """Write one chunk atomically (temporary file in the same folder, then rename)."""
    counts = [len(r.boxes) for r in results]
    offsets = np.zeros(len(results) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    boxes = [np.asarray(r.boxes, dtype=np.uint16).reshape(-1, 4) for r in results]
    arrays = {
        "keys": _encode(r.key for r in results),
        "sizes": np.array([r.image_size for r in results], dtype=np.int32).reshape(-1, 2),
        "offsets": offsets,
        "boxes": np.concatenate(boxes) if boxes else np.zeros((0, 4), dtype=np.uint16),
        "errors": _encode(r.error for r in results),
        "notes": _encode(";".join(r.notes) for r in results),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_chunk_keys(path: Path) -> list[str]:
    with np.load(path) as chunk:
        return [raw.decode("utf-8") for raw in chunk["keys"]]


def read_chunk(path: Path) -> Iterator[ImageProposals]:
    """The images of one chunk, in order."""
    try:
        with np.load(path) as chunk:
            arrays = {name: chunk[name] for name in ("keys", "sizes", "offsets", "boxes", "errors", "notes")}
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"raw proposal chunk {path} is unreadable ({error}); delete it and re-run") from None
    offsets = arrays["offsets"]
    for row, raw_key in enumerate(arrays["keys"]):
        notes = arrays["notes"][row].decode("utf-8")
        yield ImageProposals(
            key=raw_key.decode("utf-8"),
            image_size=(int(arrays["sizes"][row, 0]), int(arrays["sizes"][row, 1])),
            boxes=arrays["boxes"][offsets[row] : offsets[row + 1]],
            notes=tuple(notes.split(";")) if notes else (),
            error=arrays["errors"][row].decode("utf-8"),
        )


def list_chunks(shard_dir: Path) -> dict[int, Path]:
    """``{chunk index: path}`` of the finished chunks of a shard."""
    chunks = {}
    for entry in shard_dir.iterdir():
        match = _CHUNK_PATTERN.match(entry.name)
        if match:
            chunks[int(match.group(1))] = entry
    return chunks


def remove_stale_temporaries(shard_dir: Path) -> int:
    """Delete temporary files a killed run left behind; returns how many."""
    stale = [
        entry for entry in shard_dir.iterdir() if entry.name.startswith(".chunk-") and ".tmp-" in entry.name
    ]
    for entry in stale:
        entry.unlink()
    return len(stale)


def read_config(shard_dir: Path) -> dict[str, Any] | None:
    path = shard_dir / CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, [json.dumps(data, indent=1, sort_keys=True), "\n"])


def find_shards(inputs: Iterable[str | os.PathLike], allow_incomplete: bool = False) -> list[Path]:
    """Shard folders named by ``inputs``: each input is a shard folder or a folder of shard folders.

    Checks that the shards found form complete sets (every id of ``-of-N`` present and finished),
    raising ``ValueError`` listing what is missing otherwise; ``allow_incomplete`` accepts missing and
    unfinished shards (their finished chunks are used).
    """
    shards: list[Path] = []
    inputs = list(inputs)
    for raw_input in inputs:
        path = Path(raw_input)
        if not path.is_dir():
            raise FileNotFoundError(
                f"raw proposals {path} do not exist (expected a generation output folder)"
            )
        if _SHARD_PATTERN.match(path.name):
            shards.append(path)
        else:
            found = sorted(entry for entry in path.iterdir() if _SHARD_PATTERN.match(entry.name))
            if not found:
                raise ValueError(f"{path} holds no shard-XXXXX-of-YYYYY folders of raw proposals")
            shards.extend(found)
    shards = sorted(set(shards), key=lambda p: p.name)
    ids_by_total: dict[int, set[int]] = {}
    for shard in shards:
        shard_id, num_shards = map(int, _SHARD_PATTERN.match(shard.name).groups())
        ids_by_total.setdefault(num_shards, set()).add(shard_id)
    if len(ids_by_total) > 1:
        raise ValueError(
            f"shards of different splits are mixed (-of-{sorted(ids_by_total)}) in {list(inputs)}"
        )
    problems = [
        f"{shard} is unfinished (no {SUMMARY_FILE}; re-run its generation to finish it)"
        for shard in shards
        if not (shard / SUMMARY_FILE).is_file()
    ]
    for num_shards, ids in ids_by_total.items():
        missing = sorted(set(range(num_shards)) - ids)
        if missing:
            problems.append(
                f"shards {missing[:10]}{'...' if len(missing) > 10 else ''} of {num_shards} are missing"
            )
    if problems and not allow_incomplete:
        raise ValueError(
            "raw proposals are incomplete (--allow-incomplete uses them anyway):\n  "
            + "\n  ".join(problems)
        )
    return shards


def incomplete_shard_ids(output: str | os.PathLike, num_shards: int) -> list[int]:
    """The shards of a ``num_shards``-way split under ``output`` that are not complete (no ``summary.json``:
    never started, or stopped before their last chunk), which a re-run must generate (it resumes them)."""
    output = Path(output)
    return [
        shard_id
        for shard_id in range(num_shards)
        if not (output / shard_dir_name(shard_id, num_shards) / SUMMARY_FILE).is_file()
    ]


def iter_shard_proposals(shard_dirs: Iterable[Path]) -> Iterator[ImageProposals]:
    """Every image (failed ones included) of the given shards, chunk by chunk."""
    for shard in shard_dirs:
        for _, path in sorted(list_chunks(shard).items()):
            yield from read_chunk(path)


def find_image_proposals(shard_dirs: Iterable[Path], key: str) -> ImageProposals:
    """The raw proposals of one image, looking through the chunks' key lists first."""
    for shard in shard_dirs:
        for _, path in sorted(list_chunks(shard).items()):
            if key in read_chunk_keys(path):
                return next(image for image in read_chunk(path) if image.key == key)
    raise KeyError(f"image {key!r} is not in the raw proposals {list(shard_dirs)}")
