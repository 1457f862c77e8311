"""The proposal pipeline as cluster jobs (torch-free): one raw shard per array task, then both filter steps.

``tools/submit.py proposals`` submits these functions with submitit (a SLURM job array, one task per shard,
and a filter job that depends on it); they are plain functions, so they also run without a cluster. A job
array started by hand (``sbatch --array=0-99 ... generate_imagenet_ss_proposals.py``) gets its shard from
SLURM's variables through :func:`shard_from_environment`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from .filter_pipeline import filter_proposals, post_fix_proposals
from .generate import generate_shard

logger = logging.getLogger(__name__)


def shard_from_environment(
    shard_id: int | None, num_shards: int | None, environ: Mapping[str, str] = os.environ
) -> tuple[int, int]:
    """``(shard id, number of shards)`` from the command line or, inside a SLURM job array, from SLURM.

    An explicit ``shard_id`` wins. Otherwise, inside an array task, the shard is ``SLURM_ARRAY_TASK_ID``
    and the number of shards ``num_shards`` if given, else ``SLURM_ARRAY_TASK_COUNT`` (the array must then
    be ``0..N-1``: ``--array=0-99``; an array of some shards only, e.g. a re-run of ``--array=3,17``, needs
    the total as ``num_shards``). Outside an array: shard 0 of ``num_shards`` (default 1).
    """
    if shard_id is not None or "SLURM_ARRAY_TASK_ID" not in environ:
        return (shard_id or 0), (num_shards or 1)
    task = int(environ["SLURM_ARRAY_TASK_ID"])
    if num_shards is not None:
        return task, num_shards
    count = int(environ.get("SLURM_ARRAY_TASK_COUNT", 0))
    first = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    last = int(environ.get("SLURM_ARRAY_TASK_MAX", count - 1))
    step = int(environ.get("SLURM_ARRAY_TASK_STEP", 1))
    if count < 1 or first != 0 or last != count - 1 or step != 1:
        raise ValueError(
            f"SLURM array task {task} of an array {first}-{last} (step {step}, {count} tasks) is not "
            "0..N-1: pass --num-shards N (the total number of shards) to say which split this task is of"
        )
    return task, count


def generate_array_shard(shard_id: int, settings: Mapping) -> dict:
    """One array task: :func:`~soco_proposals.generate.generate_shard` of shard ``shard_id`` with
    ``settings`` (its other keyword arguments, ``num_shards`` included); returns the shard's summary."""
    logger.info("array task: shard %d of %d", shard_id, settings["num_shards"])
    return generate_shard(shard_id=shard_id, progress=False, **settings)


def run_filter_steps(
    raw_output: str | os.PathLike,
    strategy: str,
    filtered_json: str | os.PathLike,
    post_json: str | os.PathLike,
    store: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Steps 2 and 3 over every shard under ``raw_output`` (all must be complete): the filtered JSON, then
    the JSON with images left empty fixed (and its store). Returns the paths written."""
    filter_proposals([raw_output], strategy, filtered_json)
    post_fix_proposals([raw_output], filtered_json, post_json, store=store)
    written = {"filtered": str(filtered_json), "post": str(post_json)}
    if store:
        written["store"] = str(store)
    logger.info("filter steps done: %s", written)
    return written


def default_json_paths(raw_output: str | os.PathLike, strategy: str) -> tuple[Path, Path]:
    """``train_<strategy>.json`` and ``train_<strategy>post.json`` next to the raw output folder, the
    original's names."""
    parent = Path(raw_output).resolve().parent
    return parent / f"train_{strategy}.json", parent / f"train_{strategy}post.json"
