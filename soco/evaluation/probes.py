"""Run the probes: image-level kNN, object-level kNN and linear probe of a frozen encoder.

    probe set split -> images (cached) -> ProbeEncoder -> features (M, D) per split -> kNN / linear probe

Every process embeds its share of each split (images ``rank::world_size``); the features are gathered
with ``comm.all_gather`` and every process computes the same metrics. Results (accuracies in percent):
``probe/image_knn`` (image folder), ``probe/object_knn`` and ``probe/object_linear`` (box set), and
``probe/seconds``, the wall time of the evaluation; a probe whose data is not configured is left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm
from torch import Tensor

from .datasets import ProbeSplit, load_box_probe_set, load_image_folder_probe_set
from .encoder import ProbeEncoder, architecture_from_weights, build_probe_encoder
from .knn import knn_accuracy
from .linear_probe import linear_probe_accuracy

__all__ = [
    "ProbeData",
    "ProbeEvaluator",
    "ProbeSettings",
    "check_probe_config",
    "embed_split",
    "format_results",
    "run_probes",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSettings:
    """How the probes run: each field but the pixel statistics is ``PRETRAIN.PROBES.<FIELD>`` (upper case),
    the pixel statistics are ``PRETRAIN.DATA.PIXEL_MEAN/STD``; the config holds the only defaults."""

    knn_k: int
    knn_temperature: float
    image_size: int
    min_size_test: int
    max_size_test: int
    batch_size: int
    linear_steps: int
    linear_lr: float
    linear_weight_decay: float
    seed: int
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]

    @classmethod
    def config_fields(cls) -> list[str]:
        """The fields read from ``PRETRAIN.PROBES`` (``knn_k`` is ``PRETRAIN.PROBES.KNN_K``)."""
        return [f.name for f in fields(cls) if not f.name.startswith("pixel_")]

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ProbeSettings:
        probes = cfg.PRETRAIN.PROBES
        return cls(
            **{name: probes[name.upper()] for name in cls.config_fields()},
            pixel_mean=tuple(cfg.PRETRAIN.DATA.PIXEL_MEAN),
            pixel_std=tuple(cfg.PRETRAIN.DATA.PIXEL_STD),
        )


def check_probe_config(cfg: CfgNode) -> None:
    """With ``PRETRAIN.EVAL_PERIOD`` > 0, some probe data must be configured, box sets as a pair."""
    probes = cfg.PRETRAIN.PROBES
    if bool(probes.BOX_TRAIN) != bool(probes.BOX_TEST):
        raise ValueError(
            "PRETRAIN.PROBES.BOX_TRAIN and PRETRAIN.PROBES.BOX_TEST go together (a registered dataset "
            "each), got "
            f"BOX_TRAIN={probes.BOX_TRAIN!r}, BOX_TEST={probes.BOX_TEST!r}"
        )
    if cfg.PRETRAIN.EVAL_PERIOD > 0 and not (probes.IMAGE_ROOT or probes.BOX_TRAIN):
        raise ValueError(
            f"PRETRAIN.EVAL_PERIOD is {cfg.PRETRAIN.EVAL_PERIOD} but no probe data is configured: set "
            "PRETRAIN.PROBES.IMAGE_ROOT (an image folder with train/ and val/) and/or "
            "PRETRAIN.PROBES.BOX_TRAIN and PRETRAIN.PROBES.BOX_TEST (registered datasets), "
            "or PRETRAIN.EVAL_PERIOD 0"
        )


@dataclass
class ProbeData:
    """The probe sets: image folder splits and/or box splits, each with their class names (or None)."""

    image_train: ProbeSplit | None = None
    image_val: ProbeSplit | None = None
    image_classes: list[str] = field(default_factory=list)
    box_train: ProbeSplit | None = None
    box_test: ProbeSplit | None = None
    box_classes: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls, settings: ProbeSettings, image_root: str = "", box_train: str = "", box_test: str = ""
    ) -> ProbeData:
        """Index the configured sets (images are decoded on first use); "" leaves a probe out."""
        data = cls()
        if image_root:
            data.image_train, data.image_val, data.image_classes = load_image_folder_probe_set(
                image_root, settings.image_size
            )
        if box_train:
            data.box_train, data.box_test, data.box_classes = load_box_probe_set(
                box_train, box_test, settings.min_size_test, settings.max_size_test
            )
        return data

    @classmethod
    def from_config(cls, cfg: CfgNode, settings: ProbeSettings) -> ProbeData:
        probes = cfg.PRETRAIN.PROBES
        return cls.load(settings, probes.IMAGE_ROOT, probes.BOX_TRAIN, probes.BOX_TEST)

    def describe(self) -> str:
        parts = []
        if self.image_train is not None:
            parts.append(
                f"image kNN on {len(self.image_train)} / {len(self.image_val)} images, "
                f"{len(self.image_classes)} classes"
            )
        if self.box_train is not None:
            parts.append(
                f"object probes on {self.box_train.num_boxes} / {self.box_test.num_boxes} boxes, "
                f"{len(self.box_classes)} classes"
            )
        return "; ".join(parts)


def _gather(rows: list[tuple[int, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Concatenate every process's (image index, features, labels) rows in image order."""
    everything = [row for part in comm.all_gather(rows) for row in part]
    everything.sort(key=lambda row: row[0])
    return torch.cat([row[1] for row in everything]), torch.cat([row[2] for row in everything])


@torch.no_grad()
def embed_split(encoder: ProbeEncoder, split: ProbeSplit, batch_size: int) -> tuple[Tensor, Tensor]:
    """Features (M, D) and labels (M,) of a split on the CPU: M images, or M boxes image by image.

    This process embeds images ``rank::world_size``, in batches of up to ``batch_size`` images of one size (a
    batch is zero-padded to its largest image, and padding shifts the features near the borders, so mixing
    sizes would make a feature depend on its batch-mates, hence on the world size); every process gets all
    rows.
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index in range(comm.get_rank(), len(split), comm.get_world_size()):
        by_shape.setdefault(tuple(split[index].image.shape), []).append(index)
    batches = [
        same[start : start + batch_size]
        for same in by_shape.values()
        for start in range(0, len(same), batch_size)
    ]
    rows = []
    for batch in batches:
        samples = [split[i] for i in batch]
        images = [s.image for s in samples]
        if samples[0].boxes is None:
            features = encoder.image_features(images)
            per_image = list(features.split(1))
        else:
            features = encoder.box_features(images, [s.boxes for s in samples])
            per_image = list(features.split([len(s.labels) for s in samples]))
        rows += [(i, f.float().cpu(), s.labels) for i, f, s in zip(batch, per_image, samples, strict=True)]
    return _gather(rows)


def run_probes(encoder: ProbeEncoder, data: ProbeData, settings: ProbeSettings) -> dict[str, float]:
    """The configured probes' accuracies in percent, ``{"probe/image_knn", "probe/object_knn",
    "probe/object_linear"}`` (those whose data is set)."""
    results = {}
    knn = {"k": settings.knn_k, "temperature": settings.knn_temperature}
    with torch.autocast(encoder.device.type, enabled=False):
        if data.image_train is not None:
            train_x, train_y = embed_split(encoder, data.image_train, settings.batch_size)
            val_x, val_y = embed_split(encoder, data.image_val, settings.batch_size)
            results["probe/image_knn"] = knn_accuracy(
                train_x, train_y, val_x, val_y, len(data.image_classes), **knn
            )
        if data.box_train is not None:
            train_x, train_y = embed_split(encoder, data.box_train, settings.batch_size)
            test_x, test_y = embed_split(encoder, data.box_test, settings.batch_size)
            num_classes = len(data.box_classes)
            results["probe/object_knn"] = knn_accuracy(train_x, train_y, test_x, test_y, num_classes, **knn)
            results["probe/object_linear"] = linear_probe_accuracy(
                train_x,
                train_y,
                test_x,
                test_y,
                num_classes,
                steps=settings.linear_steps,
                lr=settings.linear_lr,
                weight_decay=settings.linear_weight_decay,
                seed=settings.seed,
            )
    return results


class ProbeEvaluator:
    """Evaluates weights on fixed probe data; the encoder is built once, from the first weights' architecture.

    ``evaluator(weights)`` loads converted weights (``None``: keep the encoder's current ones, e.g. its
    random initialisation) and returns :func:`run_probes`' results plus ``probe/seconds``.
    """

    def __init__(
        self,
        data: ProbeData,
        settings: ProbeSettings,
        device: str | torch.device = "cpu",
        stride_in_1x1: bool = False,
    ):
        self.data = data
        self.settings = settings
        self.device = device
        self.stride_in_1x1 = stride_in_1x1
        self.encoder: ProbeEncoder | None = None

    def build_encoder(self, weights: Mapping[str, np.ndarray]) -> ProbeEncoder:
        """(Re)build the encoder for the architecture of ``weights`` (weights not loaded)."""
        arch = architecture_from_weights(weights, self.stride_in_1x1)
        s = self.settings
        self.encoder = build_probe_encoder(arch, s.pixel_mean, s.pixel_std, self.device)
        return self.encoder

    def __call__(self, weights: Mapping[str, np.ndarray] | None) -> dict[str, float]:
        start = time.perf_counter()
        if weights is not None:
            if self.encoder is None:
                self.build_encoder(weights)
            self.encoder.load_weights(weights)
        elif self.encoder is None:
            raise ValueError(
                "the probe encoder has no architecture yet: pass weights (or call build_encoder)"
            )
        results = run_probes(self.encoder, self.data, self.settings)
        results["probe/seconds"] = time.perf_counter() - start
        return results


def format_results(results: Mapping[str, float]) -> str:
    """One line of :class:`ProbeEvaluator` results: ``image_knn 12.3%, object_knn 45.6% (7.8 s)``."""
    parts = [f"{k.removeprefix('probe/')} {v:.1f}%" for k, v in results.items() if k != "probe/seconds"]
    return ", ".join(parts) + f" ({results['probe/seconds']:.1f} s)"
