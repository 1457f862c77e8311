"""Pretraining data: an endless, seeded, resumable stream of views built from an image corpus.

image (corpus) -> proposals (store) -> view generator -> batch

Every sample is drawn at a *stream position* p (the p-th sample of the global training stream).
The image at p is fixed by a seeded permutation per pass over the data, and all random augmentation
of that sample is seeded by (seed, p). The stream therefore depends only on the config, not on the
number of data workers, and restarting it at iteration i gives exactly the batches an uninterrupted
run would have seen from iteration i on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm
from detectron2.utils.registry import Registry
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from soco_proposals.image_list import ImageRecord, list_images
from soco_proposals.store import open_proposals

logger = logging.getLogger(__name__)

VIEW_GENERATOR_REGISTRY = Registry("VIEW_GENERATOR")
VIEW_GENERATOR_REGISTRY.__doc__ = """
View generators turn one image (and its proposals) into the model's input for one sample.
A generator class that sets ``REQUIRES_PROPOSALS = True`` refuses a config without proposals.
Built as ``cls(cfg)``, called as ``gen(image, proposals)`` with a PIL RGB image and an int array
(N, 4) of xywh proposals (or None),
and return a dict of tensors whose shapes do not depend on the image.
"""


def seed_sample_rngs(seed: int, position: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs for the sample at ``position`` of the stream."""
    state = np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint64)
    random.seed(int(state[0]))
    np.random.seed(int(state[1] % (2**32)))
    torch.manual_seed(int(state[1]))


class StreamSampler(Sampler):
    """Endless sampler yielding ``(dataset_index, stream_position)`` for one rank.

    The global stream visits the dataset in a fresh permutation every pass (seeded by
    ``(seed, pass)``); rank r of w takes positions r, r + w, r + 2w, ... starting at ``start_position``.
    """

    def __init__(self, size: int, seed: int, start_position: int = 0, rank: int = 0, world_size: int = 1):
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size = size
        self.seed = seed
        self.start_position = start_position
        self.rank = rank
        self.world_size = world_size

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start_position + self.rank
        epoch, order = -1, None
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                order = self._permutation(epoch)
            yield int(order[position % self.size]), position
            position += self.world_size


def load_rgb_pil_image(path: str) -> Image.Image:
    """Open an image file as RGB (grayscale, palette, CMYK and RGBA are converted)."""
    with Image.open(path) as image:
        return image.convert("RGB")


class PretrainDataset(Dataset):
    """Images + their proposals, turned into views; indexed by ``(dataset_index, stream_position)``.

    An image that cannot be decoded is logged (with its path and the running count of such images in
    this worker) and replaced by the next image of the corpus, so one bad file does not stop a run.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        proposals: Mapping[str, np.ndarray] | None,
        view_generator,
        seed: int,
    ):
        self.records = records
        self.proposals = proposals
        self.view_generator = view_generator
        self.seed = seed
        self.num_unreadable = 0

    def __len__(self) -> int:
        return len(self.records)

    def _proposals_of(self, key: str) -> np.ndarray | None:
        if self.proposals is None:
            return None
        if key not in self.proposals:
            return np.zeros((0, 4), dtype=np.int64)
        return np.asarray(self.proposals[key], dtype=np.int64).reshape(-1, 4)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, position = item
        for attempt in range(len(self.records)):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                image = load_rgb_pil_image(record.path)
                break
            except (OSError, ValueError) as err:
                self.num_unreadable += 1
                logger.warning(
                    "skipping unreadable image %s (%s); %d unreadable so far in this worker",
                    record.path,
                    err,
                    self.num_unreadable,
                )
        else:
            raise RuntimeError("no image of the corpus could be read")
        seed_sample_rngs(self.seed, position)
        sample = self.view_generator(image, self._proposals_of(record.key))
        sample["image_index"] = torch.tensor((index + attempt) % len(self.records), dtype=torch.int64)
        return sample


def data_seed(cfg: CfgNode) -> int:
    """The seed of the data stream: ``cfg.SEED``, which must be fixed so that runs resume exactly."""
    if cfg.SEED < 0:
        raise ValueError("pretraining needs a fixed SEED >= 0 (the data stream and resumption depend on it)")
    return cfg.SEED


def count_images(cfg: CfgNode) -> int:
    """Number of images under ``cfg.PRETRAIN.DATA.IMAGE_ROOT``."""
    return len(list_images(cfg.PRETRAIN.DATA.IMAGE_ROOT))


def build_pretrain_dataset(cfg: CfgNode) -> PretrainDataset:
    """The dataset of ``cfg``: images, proposals (if any) and the configured view generator."""
    if not cfg.PRETRAIN.DATA.IMAGE_ROOT:
        raise ValueError(
            "PRETRAIN.DATA.IMAGE_ROOT is empty: set it to an image folder, ImageNet tree or train_map.txt"
        )
    records = list_images(cfg.PRETRAIN.DATA.IMAGE_ROOT)
    proposals = None
    if cfg.PRETRAIN.DATA.PROPOSALS:
        proposals = open_proposals(cfg.PRETRAIN.DATA.PROPOSALS)
        missing = sum(1 for r in records if r.key not in proposals)
        if missing == len(records):
            raise ValueError(
                f"none of the {len(records)} images under {cfg.PRETRAIN.DATA.IMAGE_ROOT} has an entry in "
                f"{cfg.PRETRAIN.DATA.PROPOSALS} (keys are file names up to the first '.'): "
                "wrong proposals file?"
            )
        if missing:
            logger.warning(
                "%d of %d images have no entry in %s; they use the whole image as their proposal",
                missing,
                len(records),
                cfg.PRETRAIN.DATA.PROPOSALS,
            )
    generator_class = VIEW_GENERATOR_REGISTRY.get(cfg.PRETRAIN.DATA.VIEW_GENERATOR)
    if getattr(generator_class, "REQUIRES_PROPOSALS", False) and proposals is None:
        raise ValueError(
            f"the view generator {cfg.PRETRAIN.DATA.VIEW_GENERATOR} needs proposals: set "
            "PRETRAIN.DATA.PROPOSALS to a SoCo JSON or proposal store (see selective_search/)"
        )
    generator = generator_class(cfg)
    return PretrainDataset(records, proposals, generator, data_seed(cfg))


def build_pretrain_train_loader(cfg: CfgNode, start_iter: int = 0) -> DataLoader:
    """Endless loader of per-rank batches (``IMS_PER_BATCH`` is global), resuming at ``start_iter``."""
    world_size = comm.get_world_size()
    global_batch = cfg.SOLVER.IMS_PER_BATCH
    if global_batch % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={global_batch} is not divisible by the {world_size} processes"
        )
    dataset = build_pretrain_dataset(cfg)
    sampler = StreamSampler(
        len(dataset),
        seed=data_seed(cfg),
        start_position=start_iter * global_batch,
        rank=comm.get_rank(),
        world_size=world_size,
    )
    num_workers = cfg.DATALOADER.NUM_WORKERS
    return DataLoader(
        dataset,
        batch_size=global_batch // world_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=default_collate,
        drop_last=True,
        pin_memory=torch.cuda.is_available() and cfg.MODEL.DEVICE.startswith("cuda"),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
