"""Steps 2 and 3 of SoCo's proposal pipeline on our raw shards: filter, then fix images left empty.

Step 2 (:func:`filter_proposals`) keeps the raw boxes that pass a strategy (``ratio3size0308``) and
writes the SoCo JSON ``{key: [[x, y, w, h], ...]}`` plus ``<output stem>no_props_images.txt``, the images
left without a box, as the original does. Images whose generation failed are not in the JSON; they are
listed in ``<output stem>failed_images.txt`` (and ``failed_images.txt`` in the store), which training
reads to leave them out (``PRETRAIN.DATA.EXCLUDE_FAILED``).

Step 3 (:func:`post_fix_proposals`) gives each image of that list the ratio-only boxes, else the
w, h >= 32 boxes (the original ``filter_ss_proposals_json_post_no_prop.py``).

Both can also write the compact store (with image sizes) used for training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fileio import atomic_write_text
from .filters import filter_boxes, parse_strategy, post_fallback_boxes
from .raw_shards import find_shards, iter_shard_proposals
from .store import failed_images_file, open_proposals, write_soco_json, write_store

logger = logging.getLogger(__name__)


@dataclass
class FilteredProposals:
    """Filtered boxes per key (uint16 (K, 4) xywh), image sizes (H, W), and the lists to report."""

    proposals: dict[str, np.ndarray] = field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    no_proposals: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def no_props_list_path(json_path: str | os.PathLike) -> Path:
    """``train_ratio3size0308.json`` -> ``train_ratio3size0308no_props_images.txt`` (the original's name)."""
    path = Path(json_path)
    return path.with_name(f"{path.stem}no_props_images.txt")


def filter_shards(shard_dirs: Iterable[Path], strategy_name: str) -> FilteredProposals:
    """Apply a strategy to every image of the raw shards; keys come out sorted."""
    strategy = parse_strategy(strategy_name)
    result = FilteredProposals()
    seen: set[str] = set()
    for image in iter_shard_proposals(shard_dirs):
        if image.key in seen:
            raise ValueError(f"image key {image.key!r} appears twice in the raw proposals")
        seen.add(image.key)
        if image.failed:
            result.failed.append(image.key)
            continue
        result.image_sizes[image.key] = image.image_size
        result.proposals[image.key] = filter_boxes(image.boxes, image.image_size, strategy)
    result.proposals = dict(sorted(result.proposals.items()))
    result.no_proposals = [key for key, boxes in result.proposals.items() if len(boxes) == 0]
    result.failed.sort()
    return result


def _write_outputs(
    result: FilteredProposals, output_json: Path, store: str | os.PathLike | None, metadata: dict
) -> None:
    write_soco_json(output_json, result.proposals)
    if result.failed:
        atomic_write_text(failed_images_file(output_json), [f"{key}\n" for key in result.failed])
    if store is not None:
        write_store(
            store,
            result.proposals,
            result.image_sizes,
            metadata=metadata,
            overwrite=True,
            failed_keys=result.failed,
        )
    num_boxes = sum(len(boxes) for boxes in result.proposals.values())
    logger.info(
        "%s: %d images, %d boxes (%.1f per image), %d without proposals, %d failed in generation%s",
        output_json,
        len(result.proposals),
        num_boxes,
        num_boxes / max(len(result.proposals), 1),
        len(result.no_proposals),
        len(result.failed),
        f" (listed in {failed_images_file(output_json)})" if result.failed else "",
    )


def filter_proposals(
    inputs: Iterable[str | os.PathLike],
    strategy: str,
    output_json: str | os.PathLike,
    store: str | os.PathLike | None = None,
    allow_incomplete: bool = False,
) -> FilteredProposals:
    """Step 2: filter all raw shards under ``inputs`` and write the JSON, the no-proposal list (and store)."""
    output_json = Path(output_json)
    result = filter_shards(find_shards(inputs, allow_incomplete), strategy)
    atomic_write_text(no_props_list_path(output_json), [f"{key}\n" for key in result.no_proposals])
    _write_outputs(result, output_json, store, {"strategy": strategy})
    return result


def post_fix_proposals(
    inputs: Iterable[str | os.PathLike],
    filtered: str | os.PathLike,
    output_json: str | os.PathLike,
    no_props_list: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    allow_incomplete: bool = False,
) -> FilteredProposals:
    """Step 3: re-filter the images listed as having no proposal with the fallback rules."""
    no_props_list = Path(no_props_list) if no_props_list else no_props_list_path(filtered)
    if not no_props_list.is_file():
        raise FileNotFoundError(
            f"no-proposal list {no_props_list} does not exist (written by the filter step)"
        )
    to_fix = {line.strip() for line in no_props_list.read_text().splitlines() if line.strip()}
    source: Mapping[str, np.ndarray] = open_proposals(filtered)
    unknown = sorted(to_fix - set(source))
    if unknown:
        raise ValueError(
            f"{no_props_list} lists {len(unknown)} keys absent from {filtered}, e.g. {unknown[0]!r}"
        )
    result = FilteredProposals()
    for key in source:
        result.proposals[key] = source[key]
    for image in iter_shard_proposals(find_shards(inputs, allow_incomplete)):
        if image.failed:
            result.failed.append(image.key)
        if image.key in result.proposals:
            result.image_sizes[image.key] = image.image_size
        if image.key in to_fix:
            result.proposals[image.key] = post_fallback_boxes(image.boxes)
            to_fix.discard(image.key)
    if to_fix:
        raise ValueError(
            f"{len(to_fix)} images of {no_props_list} are not in the raw proposals, e.g. {min(to_fix)!r}"
        )
    missing_sizes = len(result.proposals) - len(result.image_sizes)
    if missing_sizes and store is not None:
        raise ValueError(
            f"{missing_sizes} images of {filtered} are not in the raw proposals; cannot write the store"
        )
    result.no_proposals = [key for key, boxes in result.proposals.items() if len(boxes) == 0]
    _write_outputs(result, Path(output_json), store, {"strategy": f"{Path(filtered).stem}post"})
    return result
