"""Loaders of the linear protocol: the seeded, resumable training stream, the validation pass that scores
every image exactly once over all processes, and the features of the ``cached_features`` protocol.

Training (either protocol) reuses the pretraining's stream (:class:`soco.data.build.StreamSampler`): epoch e
is the first ``iters_per_epoch x batch`` images of a permutation seeded by ``(SEED, e)``, process r of w takes
every w-th of them, and every random draw of a sample is seeded by its stream position, so a run resumed at
any iteration sees the batches an uninterrupted run sees. Validation and feature extraction split the images
into contiguous shards without padding (Detectron2's ``InferenceSampler``) and gather the results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from soco.data.build import PretrainLoader, StreamSampler, data_seed, ignore_stop_signals
from soco.data.labeled_images import (
    DECODED,
    CenterCropDataset,
    LabeledImages,
    LabeledTrainDataset,
    RandomResizedCropFlip,
)
from soco_proposals.image_io import DECODE_FAILURES

from .model import FEATURES, IMAGES, LABELS, LinearClassifier

INDEX, FAILURE = "image_index", "failure"


def _stream_sampler(cfg: CfgNode, size: int, start_iter: int) -> StreamSampler:
    batch = cfg.SOLVER.IMS_PER_BATCH
    return StreamSampler(
        size,
        seed=data_seed(cfg),
        start_position=start_iter * batch,
        rank=comm.get_rank(),
        world_size=comm.get_world_size(),
        pass_length=cfg.SOLVER.ITERS_PER_EPOCH * batch,
    )


def _loader(cfg: CfgNode, dataset: Dataset, sampler, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=default_collate,
        pin_memory=cfg.MODEL.DEVICE.startswith("cuda"),
        persistent_workers=False,
        worker_init_fn=ignore_stop_signals,  # the training process alone acts on a pre-emption warning
    )


def build_image_train_loader(cfg: CfgNode, data: LabeledImages, start_iter: int) -> PretrainLoader:
    """The endless per-process stream of augmented training batches (``skipped`` counts bad images)."""
    view = RandomResizedCropFlip(cfg.LINEAR.DATA.CROP_SIZE, cfg.LINEAR.DATA.CROP_SCALE)
    dataset = LabeledTrainDataset(data, view, data_seed(cfg))
    sampler = _stream_sampler(cfg, len(dataset), start_iter)
    per_process = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    return PretrainLoader(_loader(cfg, dataset, sampler, per_process, cfg.DATALOADER.NUM_WORKERS))


def build_val_loader(cfg: CfgNode, data: LabeledImages) -> DataLoader:
    """This process's contiguous shard of the centre crops of ``data`` (no padding, no repeats)."""
    dataset = CenterCropDataset(data, cfg.LINEAR.DATA.RESIZE_SIZE, cfg.LINEAR.DATA.CROP_SIZE)
    sampler = InferenceSampler(len(dataset))
    return _loader(cfg, dataset, sampler, cfg.LINEAR.EVAL_BATCH_SIZE, cfg.DATALOADER.NUM_WORKERS)


def _gather(values: np.ndarray) -> np.ndarray:
    """Every process's ``values`` concatenated in rank order."""
    if comm.get_world_size() == 1:
        return values
    return np.concatenate(comm.all_gather(values))


@torch.no_grad()
def evaluate_top_k(model: LinearClassifier, batches: Iterable[Mapping[str, Tensor]], num_images: int) -> dict:
    """Top-1 and top-5 accuracy (%) over every image of the validation set, each scored exactly once.

    ``batches`` (this process's shard) hold ``image`` or ``features``, ``label``, ``image_index`` and
    ``failure``. Images that could not be decoded are counted (``skipped``, and per kind) and left out of
    the accuracy. The image indices of all processes are gathered: any image missing or scored twice is an
    error. With fewer than 5 classes, top-5 is top-K over all K classes (100 %).
    """
    was_training = model.training
    model.eval()
    correct = np.zeros(2, dtype=np.int64)
    seen, failures = [], []
    for batch in batches:
        seen.append(batch[INDEX].numpy())
        failed = batch[FAILURE] != DECODED
        failures.append(batch[FAILURE][failed].numpy())
        decoded = ~failed
        if not bool(decoded.any()):
            continue
        inputs = {key: batch[key][decoded] for key in (IMAGES, FEATURES) if key in batch}
        logits = model(inputs).float()
        labels = batch[LABELS][decoded].to(logits.device)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        correct += np.array([int(hits[:, 0].sum()), int(hits.any(dim=1).sum())])
    model.train(was_training)
    seen = _gather(np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64))
    counts = np.bincount(seen, minlength=num_images)
    if len(counts) != num_images or not (counts == 1).all():
        raise RuntimeError(
            f"validation scored {int((counts[:num_images] == 0).sum())} of {num_images} images never and "
            f"{int((counts > 1).sum())} more than once: the shards do not cover the set exactly"
        )
    correct = np.sum(comm.all_gather(correct) if comm.get_world_size() > 1 else [correct], axis=0)
    failed = _gather(np.concatenate(failures) if failures else np.zeros(0, dtype=np.int64))
    scored = num_images - len(failed)
    if scored == 0:
        raise RuntimeError(f"none of the {num_images} validation images could be decoded")
    results = {"top1": 100.0 * int(correct[0]) / scored, "top5": 100.0 * int(correct[1]) / scored}
    results |= {"val_images": float(scored), "val_skipped": float(len(failed))}
    for column in np.unique(failed):
        results[f"val_skipped/{DECODE_FAILURES[column]}"] = float((failed == column).sum())
    return results


@dataclass
class CachedFeatures:
    """Features of centre crops: ``features`` (N, C5) fp32, ``labels`` (N,), ``image_index`` (N,) and
    ``failure`` (N,) (:data:`~soco.data.labeled_images.DECODED` or the failure kind's column)."""

    features: Tensor
    labels: Tensor
    image_index: Tensor
    failure: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def decoded(self) -> CachedFeatures:
        keep = self.failure == DECODED
        return CachedFeatures(
            self.features[keep], self.labels[keep], self.image_index[keep], self.failure[keep]
        )

    def batches(self, batch_size: int) -> Iterator[dict[str, Tensor]]:
        for start in range(0, len(self), batch_size):
            part = slice(start, start + batch_size)
            yield {
                FEATURES: self.features[part],
                LABELS: self.labels[part],
                INDEX: self.image_index[part],
                FAILURE: self.failure[part],
            }


@torch.no_grad()
def extract_features(
    model: LinearClassifier, loader: Iterable[Mapping[str, Tensor]], gather: bool
) -> CachedFeatures:
    """Pooled res5 of this process's shard of centre crops (``gather``: of every process's, in image
    order). A failed image keeps its row (zeros) with its ``failure`` column, for the counts."""
    parts: dict[str, list[Tensor]] = {FEATURES: [], LABELS: [], INDEX: [], FAILURE: []}
    for batch in loader:
        parts[FEATURES].append(model.features(batch[IMAGES]).cpu())
        for key in (LABELS, INDEX, FAILURE):
            parts[key].append(batch[key])
    if not parts[FEATURES]:  # an empty shard (more processes than images)
        channels = model.head.in_features
        parts = {
            FEATURES: [torch.zeros(0, channels)],
            **{k: [torch.zeros(0, dtype=torch.int64)] for k in (LABELS, INDEX, FAILURE)},
        }
    local = {key: torch.cat(values) for key, values in parts.items()}
    if gather and comm.get_world_size() > 1:
        gathered = comm.all_gather(local)
        local = {key: torch.cat([g[key] for g in gathered]) for key in local}
        order = torch.argsort(local[INDEX])
        local = {key: value[order] for key, value in local.items()}
    return CachedFeatures(local[FEATURES], local[LABELS], local[INDEX], local[FAILURE])


class _FeatureStreamDataset(Dataset):
    """Rows of cached features indexed by ``(row, stream_position)``, as the stream sampler yields them."""

    def __init__(self, cached: CachedFeatures):
        self.cached = cached

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Tensor]:
        row, _ = item
        return {FEATURES: self.cached.features[row], LABELS: self.cached.labels[row]}


def build_feature_train_loader(cfg: CfgNode, cached: CachedFeatures, start_iter: int) -> DataLoader:
    """The endless per-process stream of batches of cached training features (same order rule as images)."""
    dataset = _FeatureStreamDataset(cached)
    sampler = _stream_sampler(cfg, len(dataset), start_iter)
    return _loader(cfg, dataset, sampler, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(), 0)
