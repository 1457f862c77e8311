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
import signal
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm
from detectron2.utils.registry import Registry
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from soco_proposals.image_io import DECODE_FAILURES, ImageDecodeError, decode_rgb
from soco_proposals.image_list import ImageRecord
from soco_proposals.store import open_proposals

from .corpus import check_proposal_coverage, pretrain_images

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
    """Seed Python's, NumPy's and torch's global (CPU) RNGs for the sample at ``position`` of the stream.

    torch's CPU generator is seeded directly: ``torch.manual_seed`` also queues seeds for every accelerator
    backend and formats a stack trace for each queued call, which cost a data worker more than a millisecond
    per sample; views are made on the CPU, so the random numbers they draw are the same.
    """
    state = np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint64)
    random.seed(int(state[0]))
    np.random.seed(int(state[1] % (2**32)))
    torch.default_generator.manual_seed(int(state[1]))


class StreamSampler(Sampler):
    """Endless sampler yielding ``(dataset_index, stream_position)`` for one rank.

    The global stream visits the dataset in a fresh permutation every pass (seeded by
    ``(seed, pass)``); rank r of w takes positions r, r + w, r + 2w, ... starting at ``start_position``.
    ``pass_length`` (default: the dataset size) cuts each pass to the first ``pass_length`` images of its
    permutation, so that a pass is a whole number of batches (epochs that drop their last partial batch).
    """

    def __init__(
        self,
        size: int,
        seed: int,
        start_position: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pass_length: int | None = None,
    ):
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        pass_length = size if pass_length is None else pass_length
        if not 0 < pass_length <= size:
            raise ValueError(f"pass_length {pass_length} must be in 1..{size} (the dataset size)")
        self.size = size
        self.seed = seed
        self.start_position = start_position
        self.rank = rank
        self.world_size = world_size
        self.pass_length = pass_length

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start_position + self.rank
        epoch, order = -1, None
        while True:
            if position // self.pass_length != epoch:
                epoch = position // self.pass_length
                order = self._permutation(epoch)
            yield int(order[position % self.pass_length]), position
            position += self.world_size


#: Batch entry counting, per sample, the unreadable images skipped to produce it, one column per kind of
#: :data:`~soco_proposals.image_io.DECODE_FAILURES`; :class:`PretrainLoader` removes it from the batch.
SKIPPED_IMAGES = "skipped_images"
#: Images drawn in a row for one sample before the dataset gives up (the corpus is then mostly unreadable).
MAX_DECODE_ATTEMPTS = 50
_FAILURE_COLUMN = {kind: column for column, kind in enumerate(DECODE_FAILURES)}
_REPLACEMENT_STREAM = 1  # keeps the replacement draws apart from the sample's augmentation seeds


class PretrainDataset(Dataset):
    """Images + their proposals, turned into views; indexed by ``(dataset_index, stream_position)``.

    ``records``: an :class:`~soco_proposals.image_list.ImageList` (numpy buffers, shared by forked workers)
    or any sequence of :class:`~soco_proposals.image_list.ImageRecord`.

    An image that cannot be decoded (any of :data:`~soco_proposals.image_io.DECODE_FAILURES`) is replaced
    by another image drawn at random, seeded by the stream position, so the stream stays a function of the
    config. Each sample carries in ``SKIPPED_IMAGES`` how many images of each kind it skipped (counted by
    :class:`PretrainLoader`, summed over ranks by :class:`soco.engine.hooks.SkippedImagesHook`); each worker
    logs each bad path once. ``MAX_DECODE_ATTEMPTS`` failures in a row for one sample are an error.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        proposals: Mapping[str, np.ndarray] | None,
        view_generator,
        seed: int,
    ):
        self.records = records
        self.proposals = proposals
        self.view_generator = view_generator
        self.seed = seed
        self._logged_failures: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def _proposals_of(self, key: str) -> np.ndarray | None:
        if self.proposals is None:
            return None
        if key not in self.proposals:
            return np.zeros((0, 4), dtype=np.int64)
        return np.asarray(self.proposals[key], dtype=np.int64).reshape(-1, 4)

    def _decode(self, index: int, position: int) -> tuple[int, ImageRecord, Image.Image, np.ndarray]:
        """The image to use at ``position``: ``index``'s, or a replacement; and the failures skipped."""
        skipped = np.zeros(len(DECODE_FAILURES), dtype=np.int64)
        replacements = last_error = None
        for _ in range(MAX_DECODE_ATTEMPTS):
            record = self.records[index]
            try:
                return index, record, decode_rgb(record), skipped
            except ImageDecodeError as error:
                last_error = error
                skipped[_FAILURE_COLUMN[error.kind]] += 1
                if index not in self._logged_failures:
                    self._logged_failures.add(index)
                    logger.warning(
                        "skipping unreadable image %s (%s: %s)", record.path, error.kind, error.reason
                    )
                if replacements is None:
                    replacements = np.random.default_rng([self.seed, position, _REPLACEMENT_STREAM])
                index = int(replacements.integers(len(self.records)))
        raise RuntimeError(
            f"{MAX_DECODE_ATTEMPTS} images drawn in a row for stream position {position} could not be "
            f"decoded (last: {last_error}); is PRETRAIN.DATA.IMAGE_ROOT readable?"
        )

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, position = item
        index, record, image, skipped = self._decode(index, position)
        seed_sample_rngs(self.seed, position)
        sample = self.view_generator(image, self._proposals_of(record.key))
        sample["image_index"] = torch.tensor(index, dtype=torch.int64)
        sample[SKIPPED_IMAGES] = torch.from_numpy(skipped)
        return sample


class PretrainLoader:
    """The endless per-rank batch stream: a ``DataLoader`` whose batches hand their skip counts on.

    ``skipped`` (int64, one entry per kind of :data:`~soco_proposals.image_io.DECODE_FAILURES`) counts the
    unreadable images behind the batches this process has consumed; it travels with the samples, so it is
    exact with persistent workers, prefetching and resumption.
    """

    def __init__(self, data_loader: DataLoader):
        self.data_loader = data_loader
        self.skipped = np.zeros(len(DECODE_FAILURES), dtype=np.int64)

    @property
    def dataset(self) -> PretrainDataset:
        return self.data_loader.dataset

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.data_loader:
            self.skipped += batch.pop(SKIPPED_IMAGES).sum(dim=0).numpy()
            yield batch


#: The signals a training process may turn into a stop request (``soco.engine.preemption``).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn``: a DataLoader worker ignores the stop signals its training process handles.

    SLURM signals every process of a job step, and a forked worker inherits the Python handlers (the
    engine's stop request, or submitit's, which would checkpoint from the worker of process 0); the
    training process alone decides when to stop, and its workers must keep serving it until then.
    """
    for signum in STOP_SIGNALS:
        if callable(signal.getsignal(signum)):
            signal.signal(signum, signal.SIG_IGN)


def data_seed(cfg: CfgNode) -> int:
    """The seed of the data stream: ``cfg.SEED``, which must be fixed so that runs resume exactly."""
    if cfg.SEED < 0:
        raise ValueError("pretraining needs a fixed SEED >= 0 (the data stream and resumption depend on it)")
    return cfg.SEED


def count_images(cfg: CfgNode) -> int:
    """Number of images the config trains on (``PRETRAIN.DATA.IMAGE_ROOT`` minus the excluded ones)."""
    return len(pretrain_images(cfg))


def build_pretrain_dataset(cfg: CfgNode) -> PretrainDataset:
    """The dataset of ``cfg``: images, proposals (if any) and the configured view generator."""
    images = pretrain_images(cfg)
    proposals = None
    if cfg.PRETRAIN.DATA.PROPOSALS:
        proposals = open_proposals(cfg.PRETRAIN.DATA.PROPOSALS)
        check_proposal_coverage(images, proposals, cfg)
    generator_class = VIEW_GENERATOR_REGISTRY.get(cfg.PRETRAIN.DATA.VIEW_GENERATOR)
    if getattr(generator_class, "REQUIRES_PROPOSALS", False) and proposals is None:
        raise ValueError(
            f"the view generator {cfg.PRETRAIN.DATA.VIEW_GENERATOR} needs proposals: set "
            "PRETRAIN.DATA.PROPOSALS to a SoCo JSON or proposal store (see selective_search/)"
        )
    generator = generator_class(cfg)
    return PretrainDataset(images, proposals, generator, data_seed(cfg))


def build_pretrain_train_loader(cfg: CfgNode, start_iter: int = 0) -> PretrainLoader:
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
    data_loader = DataLoader(
        dataset,
        batch_size=global_batch // world_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=default_collate,
        drop_last=True,
        pin_memory=torch.cuda.is_available() and cfg.MODEL.DEVICE.startswith("cuda"),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=ignore_stop_signals,
    )
    return PretrainLoader(data_loader)
