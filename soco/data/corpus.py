"""The images a pretraining config trains on: one listing per job, excluded images, proposal coverage.

* :func:`corpus_images`: the image list of ``PRETRAIN.DATA.IMAGE_ROOT``. With ``PRETRAIN.DATA.CORPUS_INDEX``
  set, rank 0 lists the corpus and writes the index when it is missing, every rank then reads it (a stale
  index is an error; on other machines, after waiting for a network file system to show it whole);
  without it, every process lists the corpus.
* :func:`pretrain_images`: those images minus the ones proposal generation failed on (the list next to the
  proposals, ``PRETRAIN.DATA.EXCLUDE_FAILED``) and those of ``PRETRAIN.DATA.EXCLUDE_LIST``.
* :func:`check_proposal_coverage`: every image should have proposals; vectorised over the whole list.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import numpy as np
from detectron2.config import CfgNode
from detectron2.utils import comm

from soco_proposals.corpus_index import IncompleteCorpusIndexError, read_corpus_index, write_corpus_index
from soco_proposals.image_list import ImageList, image_key, list_images
from soco_proposals.store import ProposalSource, failed_images_file

logger = logging.getLogger(__name__)

#: listing more images than this without an index gets a hint in the log
_LARGE_CORPUS = 100_000
#: how long a rank waits for the index rank 0 wrote to appear whole on its machine: NFS may show a new file
#: late (it caches a folder's attributes for up to ``acdirmax``, 60 s by default)
INDEX_VISIBLE_TIMEOUT_S = 120.0


def _write_index_on_main_process(root: str, index: str) -> None:
    """Rank 0 lists the corpus and writes its index if there is none; every rank waits for it."""
    error = None
    if comm.is_main_process() and not os.path.exists(index):
        logger.info("no corpus index at %s: listing %s once for the whole job", index, root)
        start = time.perf_counter()
        try:
            images = write_corpus_index(root, index)
            logger.info(
                "wrote the index of %d images to %s in %.1f s",
                len(images),
                index,
                time.perf_counter() - start,
            )
        except Exception as caught:  # still reach the barrier, so that the other ranks do not wait forever
            error = caught
    comm.synchronize()
    if error is not None:
        raise error


def _refresh_attributes(index: str) -> None:
    """List the index's folder and stat the file: an NFS client then asks the server again instead of
    answering from its attribute cache."""
    with contextlib.suppress(FileNotFoundError):
        os.listdir(os.path.dirname(os.path.abspath(index)))
    with contextlib.suppress(FileNotFoundError):
        os.stat(index)


def read_index_when_visible(index: str, root: str, timeout_s: float = INDEX_VISIBLE_TIMEOUT_S) -> ImageList:
    """The image list of the corpus index ``index`` of ``root`` (after the checks of ``read_corpus_index``),
    waiting up to ``timeout_s`` seconds for the file to appear whole on this machine.

    Another machine's new file may at first be absent here, or read empty or cut short (network file
    system caches). Until it reads whole, each try refreshes the file's attributes, then opens and reads
    it again (header, image count), after pauses growing from 0.05 s to 2 s. A stale index (its stamps)
    fails at once; still missing or incomplete at the deadline, the last problem is raised.
    """
    start = time.monotonic()
    pause, tries = 0.05, 1
    while True:
        try:
            images = read_corpus_index(index, root)
            break
        except (FileNotFoundError, IncompleteCorpusIndexError) as problem:
            waited = time.monotonic() - start
            if waited >= timeout_s:
                where = f"on this machine (rank {comm.get_rank()}) after {tries} tries in {waited:.0f} s"
                if isinstance(problem, IncompleteCorpusIndexError):
                    raise IncompleteCorpusIndexError(f"{problem} (still, {where})") from problem
                raise FileNotFoundError(
                    f"corpus index {index} is missing {where}: rank 0 could not write it (see its log) or "
                    "wrote it on a disk this machine does not see; put PRETRAIN.DATA.CORPUS_INDEX on a "
                    "file system every node shares, or build it beforehand with tools/build_corpus_index.py"
                ) from problem
        time.sleep(min(pause, max(timeout_s - waited, 0.0)))
        pause = min(2 * pause, 2.0)
        tries += 1
        _refresh_attributes(index)
    if tries > 1:
        logger.info(
            "corpus index %s read whole after %d tries (%.1f s)", index, tries, time.monotonic() - start
        )
    return images


def corpus_images(cfg: CfgNode) -> ImageList:
    """All images of ``PRETRAIN.DATA.IMAGE_ROOT``; from its index when CORPUS_INDEX is set."""
    data = cfg.PRETRAIN.DATA
    if not data.IMAGE_ROOT:
        raise ValueError(
            "PRETRAIN.DATA.IMAGE_ROOT is empty: set it to an image folder, ImageNet tree, train_map.txt "
            "or train.zip"
        )
    if data.CORPUS_INDEX:
        _write_index_on_main_process(data.IMAGE_ROOT, data.CORPUS_INDEX)
        return read_index_when_visible(data.CORPUS_INDEX, data.IMAGE_ROOT)
    start = time.perf_counter()
    images = list_images(data.IMAGE_ROOT)
    seconds = time.perf_counter() - start
    if len(images) > _LARGE_CORPUS:
        logger.info(
            "listed %d images under %s in %.1f s; set PRETRAIN.DATA.CORPUS_INDEX to list them once per job",
            len(images),
            data.IMAGE_ROOT,
            seconds,
        )
    return images


def read_key_list(path: str | os.PathLike) -> np.ndarray:
    """The keys of a file of image keys or paths (one per line; blank lines ignored), as a bytes array."""
    keys = [image_key(line.strip()) for line in Path(path).read_text().splitlines() if line.strip()]
    return np.array(
        [key.encode("utf-8") for key in keys], dtype=f"S{max((len(k.encode()) for k in keys), default=1)}"
    )


def _exclusion_lists(cfg: CfgNode) -> list[Path]:
    data = cfg.PRETRAIN.DATA
    lists = []
    if data.EXCLUDE_FAILED and data.PROPOSALS:
        failed = failed_images_file(data.PROPOSALS)
        if failed.is_file():
            lists.append(failed)
    if data.EXCLUDE_LIST:
        if not os.path.isfile(data.EXCLUDE_LIST):
            raise FileNotFoundError(f"PRETRAIN.DATA.EXCLUDE_LIST={data.EXCLUDE_LIST} does not exist")
        lists.append(Path(data.EXCLUDE_LIST))
    return lists


def pretrain_images(cfg: CfgNode) -> ImageList:
    """The images the config trains on: the corpus minus the excluded images (each list's count is logged)."""
    images = corpus_images(cfg)
    for key_list in _exclusion_lists(cfg):
        listed = read_key_list(key_list)
        excluded = np.isin(images.key_array(), listed)
        images = images.subset(~excluded)
        logger.info(
            "left out %d images listed in %s (%d of its %d keys are not in the corpus)",
            int(excluded.sum()),
            key_list,
            len(np.unique(listed)) - int(excluded.sum()),
            len(listed),
        )
        if len(images) == 0:
            raise ValueError(
                f"every image of {cfg.PRETRAIN.DATA.IMAGE_ROOT} is excluded (last list: {key_list})"
            )
    return images


def check_proposal_coverage(images: ImageList, proposals: ProposalSource, cfg: CfgNode) -> None:
    """Error when no image has proposals (wrong file); a warning with the count when some have none."""
    missing = len(images) - int(proposals.contains_keys(images.key_array()).sum())
    if missing == len(images):
        raise ValueError(
            f"none of the {len(images)} images under {cfg.PRETRAIN.DATA.IMAGE_ROOT} has an entry in "
            f"{cfg.PRETRAIN.DATA.PROPOSALS} (keys are file names up to the first '.'): wrong proposals file?"
        )
    if missing:
        logger.warning(
            "%d of %d images have no entry in %s; they use the whole image as their proposal",
            missing,
            len(images),
            cfg.PRETRAIN.DATA.PROPOSALS,
        )
