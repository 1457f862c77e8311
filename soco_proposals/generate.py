"""Generate raw selective-search proposals for a corpus: worker processes, shards, resume.

The sorted image list (:func:`soco_proposals.image_list.list_images`) is split into ``num_shards`` disjoint
shards (image ``i`` goes to shard ``i % num_shards``), so N machines can each run one shard. A shard is
processed in fixed chunks of consecutive images; each finished chunk is written atomically and skipped
when the command is run again, so a killed run resumes losing at most the chunks in flight and never
duplicating an image. See :mod:`soco_proposals.raw_shards` for the files.

The corpus is a folder, an ImageNet tree, a ``train_map.txt`` or the original SoCo's ``train.zip`` (read
in place, see :mod:`soco_proposals.zip_archive`), listed directly or through its corpus index.

Images that cannot be decoded never stop the run: they are recorded as failed with the kind of failure
(:data:`soco_proposals.image_io.DECODE_FAILURES`: decompression bomb, zero bytes, not an image, truncated,
unsupported mode, unreadable) and listed in the shard's ``errors.log``, and the summary counts each kind;
images that need a conversion (grayscale, CMYK, RGBA, palette), that are not JPEG, or that are tiny
(< 32 px on a side) are processed and counted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .backends import get_backend
from .corpus_index import read_corpus_index
from .fileio import atomic_write_text
from .image_io import ImageDecodeError, decode_rgb
from .image_list import ImageRecord, list_images
from .raw_shards import (
    CONFIG_FILE,
    ERROR_LOG_FILE,
    RAW_FORMAT,
    SUMMARY_FILE,
    ImageProposals,
    ShardSummary,
    chunk_path,
    iter_shard_proposals,
    list_chunks,
    read_chunk_keys,
    read_config,
    remove_stale_temporaries,
    shard_dir_name,
    write_chunk,
    write_json,
)
from .store import MAX_COORDINATE

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 500
TINY_SIDE = 32


def load_rgb_array(source: ImageRecord | str) -> tuple[np.ndarray, list[str]]:
    """Decode an image (record or file path) fully as RGB uint8 (H, W, 3), with remarks on what had to be
    converted. Raises :class:`soco_proposals.image_io.ImageDecodeError`.
    """
    notes: list[str] = []
    array = np.asarray(decode_rgb(source, notes))
    return array, notes


def resize_long_side(image: np.ndarray, max_size: int) -> np.ndarray:
    """Downscale (H, W, 3) so that its long side is at most ``max_size`` (unchanged when already small)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_size:
        return image
    scale = max_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def scale_boxes_back(
    boxes: np.ndarray, resized_hw: tuple[int, int], original_hw: tuple[int, int]
) -> np.ndarray:
    """Map xywh boxes (w = max_x - min_x) from a resized image to the pixels of the original one.

    A box covers the original pixels under its first and last resized pixels.
    """
    sy, sx = original_hw[0] / resized_hw[0], original_hw[1] / resized_hw[1]
    x1 = np.floor(boxes[:, 0] * sx)
    y1 = np.floor(boxes[:, 1] * sy)
    x2 = np.minimum(np.ceil((boxes[:, 0] + boxes[:, 2] + 1) * sx) - 1, original_hw[1] - 1)
    y2 = np.minimum(np.ceil((boxes[:, 1] + boxes[:, 3] + 1) * sy) - 1, original_hw[0] - 1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.int64)


def propose_image(record: ImageRecord, backend: str, max_size: int | None = None) -> ImageProposals:
    """Raw proposals of one image; any failure is returned as a failed result, never raised."""
    try:
        image, notes = load_rgb_array(record)
        original_hw = image.shape[:2]
        if min(original_hw) < TINY_SIDE:
            notes.append(f"tiny:{original_hw[0]}x{original_hw[1]}")
        if max(original_hw) > MAX_COORDINATE:
            raise ValueError(f"image of {original_hw} px is too large for uint16 boxes")
        resized = resize_long_side(image, max_size) if max_size else image
        boxes = get_backend(backend)(resized)
        if resized.shape[:2] != original_hw:
            boxes = scale_boxes_back(boxes, resized.shape[:2], original_hw)
        return ImageProposals(record.key, original_hw, boxes.astype(np.uint16), tuple(notes))
    except ImageDecodeError as error:
        message = f"{error.kind}: {error.reason}".replace("\n", " ")
        return ImageProposals(record.key, (0, 0), np.zeros((0, 4), dtype=np.uint16), (), message)
    except Exception as error:  # one bad image must not stop a 1.28M-image run
        message = f"{type(error).__name__}: {error}".replace("\n", " ") or type(error).__name__
        return ImageProposals(record.key, (0, 0), np.zeros((0, 4), dtype=np.uint16), (), message)


def shard_records(
    records: Sequence[ImageRecord], shard_id: int, num_shards: int
) -> Sequence[ImageRecord]:
    """The images of shard ``shard_id``: every ``num_shards``-th image of the sorted list (an
    :class:`~soco_proposals.image_list.ImageList` stays one, without a Python object per image).
    """
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"shard id {shard_id} is not in [0, {num_shards}) (num_shards={num_shards})")
    return records[shard_id::num_shards]


def _keys_digest(records: Sequence[ImageRecord]) -> str:
    digest = hashlib.sha1()
    for record in records:
        digest.update(record.key.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _check_or_write_config(shard_dir: Path, config: dict) -> None:
    existing = read_config(shard_dir)
    if existing is None:
        write_json(shard_dir / CONFIG_FILE, config)
        return
    differences = {k: (existing.get(k), v) for k, v in config.items() if existing.get(k) != v}
    if differences:
        details = ", ".join(f"{k}: {old!r} on disk, {new!r} now" for k, (old, new) in differences.items())
        raise ValueError(
            f"{shard_dir} was generated with other settings ({details}); "
            "use another --output or delete the folder to start over"
        )


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not enabled, smoothing=0.05)


def generate_shard(
    image_root: str | os.PathLike,
    output: str | os.PathLike,
    backend: str = "reference",
    workers: int = 1,
    shard_id: int = 0,
    num_shards: int = 1,
    max_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    corpus_index: str | os.PathLike | None = None,
) -> dict:
    """Generate (or resume) one shard of raw proposals under ``output``; returns its summary.

    ``image_root``: a folder, an ImageNet tree, a ``train_map.txt`` or a zip; ``corpus_index``: its index
    (see :mod:`soco_proposals.corpus_index`), read instead of listing the corpus. Finished chunks already on
    disk are verified (same images) and skipped.
    """
    get_backend(backend)  # fail early on a typo
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    images = read_corpus_index(corpus_index, image_root) if corpus_index else list_images(image_root)
    records = shard_records(images, shard_id, num_shards)
    shard_dir = Path(output) / shard_dir_name(shard_id, num_shards)
    shard_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "format": RAW_FORMAT,
        "backend": backend,
        "max_size": max_size,
        "chunk_size": chunk_size,
        "shard_id": shard_id,
        "num_shards": num_shards,
        "num_images": len(records),
        "keys_sha1": _keys_digest(records),
    }
    _check_or_write_config(shard_dir, config)
    stale = remove_stale_temporaries(shard_dir)
    if stale:
        logger.info("removed %d unfinished chunk file(s) of an interrupted run in %s", stale, shard_dir)

    chunks = [records[start : start + chunk_size] for start in range(0, len(records), chunk_size)]
    finished = list_chunks(shard_dir)
    for index, path in finished.items():
        expected = [record.key for record in chunks[index]] if index < len(chunks) else []
        if read_chunk_keys(path) != expected:
            raise ValueError(
                f"{path} does not hold the images expected for chunk {index}; delete it to redo it"
            )
    pending = [index for index in range(len(chunks)) if index not in finished]
    done_images = sum(len(chunks[index]) for index in finished)
    logger.info(
        "%s: %d images, %d of %d chunks already done, %d workers, backend %s",
        shard_dir,
        len(records),
        len(finished),
        len(chunks),
        workers,
        backend,
    )

    start_time = time.perf_counter()
    num_todo = len(records) - done_images
    todo = (record for index in pending for record in chunks[index])
    worker = functools.partial(propose_image, backend=backend, max_size=max_size)
    parallel = workers > 1 and num_todo > 0
    pool = multiprocessing.Pool(workers) if parallel else contextlib.nullcontext()
    with pool, _progress(len(records), done_images, progress, shard_dir.name) as bar:
        # imap keeps the input order, so results arrive chunk by chunk
        results = pool.imap(worker, todo, chunksize=1) if parallel else map(worker, todo)
        for index in pending:
            chunk_results = [next(results) for _ in chunks[index]]
            write_chunk(chunk_path(shard_dir, index), chunk_results)
            bar.update(len(chunk_results))
    elapsed = time.perf_counter() - start_time
    return _finish_shard(shard_dir, records, config, elapsed, num_todo)


def _finish_shard(
    shard_dir: Path, records: Sequence[ImageRecord], config: dict, elapsed: float, processed: int
) -> dict:
    """Write the error log and the summary (which marks the shard complete) from all its chunks."""
    paths = {record.key: record.path for record in records}
    summary = ShardSummary()
    log_lines = []
    for result in iter_shard_proposals([shard_dir]):
        summary.add(result)
        if result.failed:
            log_lines.append(f"FAILED\t{paths[result.key]}\t{result.error}\n")
        for note in result.notes:
            log_lines.append(f"NOTE\t{paths[result.key]}\t{note}\n")
    if summary.images != len(records):
        raise RuntimeError(f"{shard_dir}: chunks hold {summary.images} images, expected {len(records)}")
    atomic_write_text(shard_dir / ERROR_LOG_FILE, log_lines)
    result = {
        **config,
        "images": summary.images,
        "failed": summary.failed,
        "failures": summary.failures,
        "boxes": summary.boxes,
        "notes": summary.notes,
        "processed_this_run": processed,
        "seconds_this_run": round(elapsed, 3),
    }
    write_json(shard_dir / SUMMARY_FILE, result)
    logger.info(
        "%s: %d images, %d failed %s, %d boxes (%.1f per image), notes %s; log in %s",
        shard_dir,
        summary.images,
        summary.failed,
        summary.failures,
        summary.boxes,
        summary.boxes / max(summary.images - summary.failed, 1),
        summary.notes,
        shard_dir / ERROR_LOG_FILE,
    )
    return result
