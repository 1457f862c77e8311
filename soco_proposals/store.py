"""Read and write selective-search proposals: the SoCo JSON file and the compact proposal store.

Both formats hold, per image key, boxes ``[x, y, w, h]`` in pixels of the original image with
``w = max_x - min_x`` (one less than the inclusive pixel extent), as the original SoCo JSON does.

*SoCo JSON*: one dict ``{key: [[x, y, w, h], ...]}``. Loading it costs about 1 GB of RAM per process
for ImageNet, so training should use the store.

*Compact store*: a directory of ``.npy`` arrays, memory-mapped on first use in each process (a
DataLoader worker holds only the pages it touches), boxes encoded by :mod:`soco_proposals.box_codec`:

=====================  ============================  ==============================================
file                   array                         meaning
=====================  ============================  ==============================================
``keys.npy``           ``S<L>`` (n,), sorted         image keys, UTF-8, searched with ``np.searchsorted``
``offsets.npy``        uint32/64 (n + 1, 3)          cumulative (boxes, distinct boxes, packed bytes)
``coord_bits.npy``     uint8 (n,)                    bits per coordinate of each image's boxes
``packed.npy``         uint8 (B,)                    distinct boxes of all images, bit-packed
``box_index.npy``      uint8/16/32 (M,)              per box, its row among its image's distinct boxes
``sizes.npy``          uint16 (n, 2), optional       image (H, W) when known (raw proposals know it)
``meta.json``          -                             format name, version, counts, free metadata
``failed_images.txt``  -, optional                   keys of the images the proposal generator failed on
=====================  ============================  ==============================================

:func:`open_proposals` opens either format as a read-only mapping. Next to a JSON file the failed-image
list is ``<stem>failed_images.txt`` (see :func:`failed_images_file`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .box_codec import decode_boxes, encode_boxes
from .fileio import atomic_directory, atomic_write_text

STORE_FORMAT = "soco-proposal-store"
STORE_VERSION = 1
BOX_DTYPE = np.uint16
MAX_COORDINATE = int(np.iinfo(BOX_DTYPE).max)
_ARRAYS = ("keys", "offsets", "coord_bits", "packed", "box_index")
_STORE_FILES = tuple(f"{name}.npy" for name in _ARRAYS) + ("meta.json",)


class ProposalSource(Mapping):
    """Read-only mapping ``key -> int64 array (N, 4)`` of xywh boxes (N may be 0).

    Cheap to pickle: subclasses hold a path and open their data lazily in each process.
    """

    path: Path

    def image_size(self, key: str) -> tuple[int, int] | None:
        """(H, W) of the image when the source records it, else ``None``."""
        return None

    def contains_keys(self, keys: np.ndarray) -> np.ndarray:
        """(n,) bool: which of the UTF-8 keys ``keys`` (a NumPy bytes array, (n,)) have an entry."""
        return np.fromiter((key.decode("utf-8") in self for key in keys), dtype=bool, count=len(keys))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {len(self)} images)"


class JsonProposals(ProposalSource):
    """A SoCo JSON file ``{key: [[x, y, w, h], ...]}``, loaded fully on first access in a process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"proposal JSON {self.path} does not exist")
        self._data: dict[str, list] | None = None

    def _entries(self) -> dict[str, list]:
        if self._data is None:
            with open(self.path) as f:
                data = json.load(f)
            if not isinstance(data, dict):
                raise ValueError(
                    f"{self.path}: expected a JSON object {{key: [[x, y, w, h], ...]}}, "
                    f"got {type(data).__name__}"
                )
            self._data = data
        return self._data

    def __getitem__(self, key: str) -> np.ndarray:
        return _as_box_array(self._entries()[key], key, self.path).astype(np.int64)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())

    def __contains__(self, key: object) -> bool:
        return key in self._entries()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_data": None}


class StoreProposals(ProposalSource):
    """A compact proposal store directory (see the module docstring), memory-mapped lazily."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_store_meta(self.path)
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def has_sizes(self) -> bool:
        return bool(self.meta["has_sizes"])

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            names = list(_ARRAYS) + (["sizes"] if self.has_sizes else [])
            arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in names}
            n = int(self.meta["num_images"])
            expected = {
                "keys": (n,),
                "offsets": (n + 1, 3),
                "coord_bits": (n,),
                "box_index": (int(self.meta["num_boxes"]),),
            }
            if self.has_sizes:
                expected["sizes"] = (n, 2)
            for name, shape in expected.items():
                if arrays[name].shape != shape:
                    raise ValueError(
                        f"proposal store {self.path}: {name}.npy has shape {arrays[name].shape}, "
                        f"meta.json implies {shape}; the store is corrupt or was partly overwritten"
                    )
            self._arrays = arrays
        return self._arrays

    def _index(self, key: object) -> int:
        """Row of ``key`` in the sorted key array, or -1."""
        if not isinstance(key, str):
            return -1
        keys = self._open()["keys"]
        encoded = key.encode("utf-8")
        if len(keys) == 0 or len(encoded) > keys.dtype.itemsize:
            return -1
        row = int(np.searchsorted(keys, np.bytes_(encoded)))
        return row if row < len(keys) and keys[row] == encoded else -1

    def __getitem__(self, key: str) -> np.ndarray:
        row = self._index(key)
        if row < 0:
            raise KeyError(key)
        arrays = self._open()
        start, stop = arrays["offsets"][row : row + 2].astype(np.int64)  # (boxes, distinct, bytes) each
        return decode_boxes(  # (N, 4) int64
            arrays["packed"][start[2] : stop[2]],
            int(stop[1] - start[1]),
            int(arrays["coord_bits"][row]),
            arrays["box_index"][start[0] : stop[0]],
        )

    def image_size(self, key: str) -> tuple[int, int] | None:
        if not self.has_sizes:
            return None
        row = self._index(key)
        if row < 0:
            raise KeyError(key)
        height, width = self._open()["sizes"][row]
        return int(height), int(width)

    def __contains__(self, key: object) -> bool:
        return self._index(key) >= 0

    def contains_keys(self, keys: np.ndarray) -> np.ndarray:
        """Vectorised membership: one ``searchsorted`` of all keys in the sorted key array."""
        stored = self._open()["keys"]
        if len(stored) == 0 or len(keys) == 0:
            return np.zeros(len(keys), dtype=bool)
        width = max(stored.dtype.itemsize, keys.dtype.itemsize)  # compare untruncated
        stored, keys = stored.astype(f"S{width}"), keys.astype(f"S{width}")
        rows = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
        return stored[rows] == keys

    def __iter__(self) -> Iterator[str]:
        for raw in self._open()["keys"]:
            yield raw.decode("utf-8")

    def __len__(self) -> int:
        return int(self.meta["num_images"])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "meta": self.meta, "_arrays": None}


def open_proposals(path: str | os.PathLike) -> ProposalSource:
    """Open a SoCo JSON file (``*.json``) or a compact proposal store directory as a read-only mapping."""
    path = Path(path)
    if path.is_dir():
        return StoreProposals(path)
    if path.suffix == ".json" and path.is_file():
        return JsonProposals(path)
    if not path.exists():
        raise FileNotFoundError(f"proposals {path} do not exist (expected a .json file or a store directory)")
    raise ValueError(f"proposals {path}: expected a SoCo .json file or a proposal store directory")


FAILED_IMAGES_FILE = "failed_images.txt"


def failed_images_file(proposals: str | os.PathLike) -> Path:
    """Where the keys of the images that failed proposal generation are listed, next to the proposals:
    ``train_ratio3size0308failed_images.txt`` beside ``train_ratio3size0308.json`` (the original's naming
    scheme for its per-step lists), ``failed_images.txt`` inside a store.
    """
    path = Path(proposals)
    if path.suffix == ".json":
        return path.with_name(f"{path.stem}{FAILED_IMAGES_FILE}")
    return path / FAILED_IMAGES_FILE


def read_store_meta(path: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of a store, after checking that the directory is a complete store."""
    path = Path(path)
    missing = [name for name in _STORE_FILES if not (path / name).is_file()]
    if missing:
        raise ValueError(
            f"{path} is not a proposal store: missing {', '.join(missing)} "
            f"(a store holds {', '.join(_STORE_FILES)})"
        )
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
        raise ValueError(
            f"{path}/meta.json: format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected {STORE_FORMAT!r} version {STORE_VERSION}"
        )
    return meta


def _as_box_array(boxes: Any, key: str, origin: object) -> np.ndarray:
    """Validate one image's boxes and return them as uint16 (N, 4)."""
    array = np.asarray(boxes)
    if array.size == 0:
        return np.zeros((0, 4), dtype=BOX_DTYPE)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{origin}: boxes of {key!r} have shape {array.shape}, expected (N, 4) xywh")
    is_integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array))
    )
    if not is_integral:
        raise ValueError(f"{origin}: boxes of {key!r} must be integers, got {array.dtype}")
    if array.min() < 0 or array.max() > MAX_COORDINATE:
        raise ValueError(
            f"{origin}: boxes of {key!r} have coordinates in [{array.min()}, {array.max()}], "
            f"expected [0, {MAX_COORDINATE}]"
        )
    return array.astype(BOX_DTYPE)


def _smallest_unsigned(max_value: int) -> type:
    """The narrowest unsigned integer dtype holding ``max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"{max_value} does not fit in 64 bits")


def _concatenate(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _check_key(key: object, origin: object) -> bytes:
    if not isinstance(key, str) or not key or "\x00" in key:
        raise ValueError(f"{origin}: invalid image key {key!r} (expected a non-empty string without NUL)")
    return key.encode("utf-8")


def write_store(
    path: str | os.PathLike,
    proposals: Mapping[str, Any],
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    failed_keys: Iterable[str] = (),
) -> Path:
    """Write ``{key: boxes (N, 4) xywh}`` (and optionally ``{key: (H, W)}``) as a compact store.

    ``failed_keys``: images the proposal generator could not read, listed in ``failed_images.txt``.

    The store is built in a temporary directory next to ``path`` and moved in place at the end, so a
    killed conversion never leaves a half-written store behind.
    """
    path = Path(path)
    encoded_keys = sorted((_check_key(key, path), key) for key in proposals)
    key_width = max((len(raw) for raw, _ in encoded_keys), default=1)
    images = [encode_boxes(_as_box_array(proposals[key], key, path)) for _, key in encoded_keys]
    counts = np.zeros((len(images) + 1, 3), dtype=np.uint64)
    counts[1:, 0] = [len(image.index) for image in images]
    counts[1:, 1] = [image.num_unique for image in images]
    counts[1:, 2] = [len(image.packed) for image in images]
    offsets = np.cumsum(counts, axis=0)
    max_unique = int(counts[:, 1].max())
    arrays = {
        "keys": np.array([raw for raw, _ in encoded_keys], dtype=f"S{key_width}"),
        "offsets": offsets.astype(_smallest_unsigned(int(offsets[-1].max()))),
        "coord_bits": np.array([image.bits for image in images], dtype=np.uint8),
        "packed": _concatenate([image.packed for image in images], np.uint8),
        "box_index": _concatenate([image.index for image in images], _smallest_unsigned(max_unique)),
    }
    if image_sizes is not None:
        missing = [key for _, key in encoded_keys if key not in image_sizes]
        if missing:
            raise ValueError(f"{path}: no image size given for {len(missing)} keys, e.g. {missing[0]!r}")
        sizes = np.array([image_sizes[key] for _, key in encoded_keys], dtype=np.int64).reshape(-1, 2)
        if sizes.size and (sizes.min() < 0 or sizes.max() > MAX_COORDINATE):
            raise ValueError(f"{path}: image sizes must lie in [0, {MAX_COORDINATE}]")
        arrays["sizes"] = sizes.astype(np.uint16)
    meta = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "num_images": len(encoded_keys),
        "num_boxes": int(offsets[-1, 0]),
        "num_unique_boxes": int(offsets[-1, 1]),
        "box_format": "xywh, w = max_x - min_x",
        "has_sizes": image_sizes is not None,
        "metadata": dict(metadata or {}),
    }
    with atomic_directory(path, overwrite=overwrite) as tmp_dir:
        for name, array in arrays.items():
            np.save(tmp_dir / f"{name}.npy", array)
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        failed = sorted(failed_keys)
        if failed:
            (tmp_dir / FAILED_IMAGES_FILE).write_text("".join(f"{key}\n" for key in failed))
    return path


def _json_lines(items: Iterable[tuple[str, Any]]) -> Iterator[str]:
    """The SoCo JSON text, one key per chunk, formatted like ``json.dump`` of the dict."""
    yield "{"
    for index, (key, boxes) in enumerate(items):
        rows = np.asarray(boxes, dtype=np.int64).reshape(-1, 4).tolist()
        yield f"{', ' if index else ''}{json.dumps(key)}: {json.dumps(rows)}"
    yield "}"


def write_soco_json(
    path: str | os.PathLike, proposals: Mapping[str, Any] | Iterable[tuple[str, Any]]
) -> Path:
    """Write ``{key: [[x, y, w, h], ...]}`` atomically and streaming (never one giant string in memory).

    ``proposals`` is a mapping or an iterable of ``(key, boxes)`` pairs, written in its order.
    """
    items = proposals.items() if isinstance(proposals, Mapping) else proposals
    return atomic_write_text(path, _json_lines(items))


def json_to_store(
    json_path: str | os.PathLike, store_path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Convert a SoCo JSON proposal file to a compact store."""
    source = JsonProposals(json_path)
    failed_list = failed_images_file(json_path)
    failed = failed_list.read_text().split() if failed_list.is_file() else ()
    return write_store(
        store_path,
        source._entries(),
        metadata={"converted_from": str(json_path)},
        overwrite=overwrite,
        failed_keys=failed,
    )


def store_to_json(store_path: str | os.PathLike, json_path: str | os.PathLike) -> Path:
    """Convert a compact store (or any proposal source path) to a SoCo JSON file."""
    return write_soco_json(json_path, open_proposals(store_path))
