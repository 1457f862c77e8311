"""Run the probes: image-level kNN, object-level kNN and linear probe of a frozen encoder.

    probe set split -> images (cached) -> ProbeEncoder -> features (M, D) per readout -> kNN / linear probe

Every process embeds its share of each split (images ``rank::world_size``); the features are gathered
with ``comm.all_gather``, the main process computes the metrics and every process receives them. Results
(:data:`PROBE_KEYS`, accuracies in percent) and ``probe/seconds``, the wall time of the evaluation; a probe
whose data is not configured is left out. A probe whose features are not all finite (a diverged model)
is NaN, with an error in the log, never a number. Images that cannot be decoded are left out and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm
from torch import Tensor

from .datasets import ProbeSplit, load_box_probe_set, load_image_folder_probe_set
from .encoder import READOUTS, ProbeArchitecture, ProbeEncoder, architecture_from_weights, build_probe_encoder
from .knn import KNN_NORMALIZATIONS, knn_accuracy
from .linear_probe import linear_probe_accuracy

__all__ = [
    "PROBE_KEYS",
    "ProbeData",
    "ProbeEvaluator",
    "ProbeSettings",
    "check_probe_config",
    "describe_readouts",
    "embed_split",
    "format_results",
    "run_probes",
]

logger = logging.getLogger(__name__)

#: Every probe result key, in table order, and what it measures (accuracy in percent).
PROBE_KEYS = {
    "probe/image_knn": "image level: kNN of whole images by mean-pooled res5 (the same for every method)",
    "probe/object_knn": "object level, own readout: kNN of ground-truth boxes pooled as its detector pools",
    "probe/object_linear": "object level, own readout: linear (logistic-regression) probe, same features",
    "probe/object_knn_shared": f"object level, shared readout ({READOUTS['shared']}): kNN",
    "probe/object_linear_shared": "object level, shared readout: linear probe",
}
#: Minimum seconds between two progress lines while a split is decoded the first time.
PROGRESS_SECONDS = 10.0


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
    knn_normalization: str
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
    if probes.KNN_NORMALIZATION not in KNN_NORMALIZATIONS:
        raise ValueError(
            f"PRETRAIN.PROBES.KNN_NORMALIZATION is {probes.KNN_NORMALIZATION!r}; expected one of "
            f"{KNN_NORMALIZATIONS}"
        )
    if probes.BOX_TRAIN and probes.BOX_TRAIN == probes.BOX_TEST:
        raise ValueError(
            "PRETRAIN.PROBES.BOX_TRAIN and PRETRAIN.PROBES.BOX_TEST are the same dataset "
            f"{probes.BOX_TRAIN!r}: the probes would score their own training boxes; register a held-out "
            "test set"
        )
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


def _gather(rows: list[tuple[int, dict[str, Tensor], Tensor]]) -> tuple[dict[str, Tensor], Tensor]:
    """Concatenate every process's (image index, features per readout, labels) rows in image order."""
    everything = [row for part in comm.all_gather(rows) for row in part]
    everything.sort(key=lambda row: row[0])
    if not everything:
        return {}, torch.zeros(0, dtype=torch.long)
    features = {name: torch.cat([row[1][name] for row in everything]) for name in everything[0][1]}
    return features, torch.cat([row[2] for row in everything])


def _decoded(split: ProbeSplit, indices: list[int]) -> list[int]:
    """Decode (once, cached) the images ``indices`` of this process, logging progress every
    :data:`PROGRESS_SECONDS`, and the failures of every process (counted over all of them); returns the
    indices that decoded."""
    todo = [i for i in indices if not split.is_cached(i)]
    start = last = time.perf_counter()
    for done, index in enumerate(todo, 1):
        split[index]
        if time.perf_counter() - last > PROGRESS_SECONDS:
            last = time.perf_counter()
            logger.info("%s: decoded %d / %d images (%.0f s)", split.name, done, len(todo), last - start)
    kinds = Counter(split.failures[i].split(":")[0] for i in todo if i in split.failures)
    counts = comm.all_gather((kinds, len(todo)))
    kinds, tried = sum((c for c, _ in counts), Counter()), sum(n for _, n in counts)
    if kinds and comm.is_main_process():
        logger.error(
            "%s: %d of %d images cannot be decoded and are left out of the probes (%s; each is logged)",
            split.name, kinds.total(), tried, ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())),
        )  # fmt: skip
    return [i for i in indices if i not in split.failures]


@torch.no_grad()
def embed_split(
    encoder: ProbeEncoder, split: ProbeSplit, batch_size: int
) -> tuple[dict[str, Tensor], Tensor]:
    """Features per readout and labels (M,) of a split on the CPU: M images, or M boxes image by image.

    Image splits give ``{"image": (M, C5)}``, box splits :meth:`ProbeEncoder.box_readouts`' ``{"own": (M, F),
    "shared": (M, C5)}`` (only ``"own"`` when it is the shared readout). This process embeds images
    ``rank::world_size``, in batches of up to ``batch_size`` images of one size (a batch is zero-padded to its
    largest image, and padding shifts the features near the borders, so mixing sizes would make a feature
    depend on its batch-mates, hence on the world size); every process gets all rows. Images that cannot be
    decoded are left out (counted in the log).
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index in _decoded(split, list(range(comm.get_rank(), len(split), comm.get_world_size()))):
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
            readouts = {"image": encoder.image_features(images)}
            sizes = [1] * len(samples)
        else:
            readouts = encoder.box_readouts(images, [s.boxes for s in samples])
            sizes = [len(s.labels) for s in samples]
        per_image = {name: f.float().cpu().split(sizes) for name, f in readouts.items()}
        for position, (index, sample) in enumerate(zip(batch, samples, strict=True)):
            rows.append((index, {name: f[position] for name, f in per_image.items()}, sample.labels))
    return _gather(rows)


def _non_finite_rows(features: Tensor) -> int:
    return int((~features.isfinite()).any(dim=1).sum()) if features.numel() else 0


def _score(
    key: str, classify, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], num_classes: int
) -> float:
    """``classify(train_x, train_y, test_x, test_y, num_classes)``, or NaN (logged as an error) when a feature
    is not finite, a split has no features, or the classifier itself gives NaN."""
    bad_train, bad_test = _non_finite_rows(train[0]), _non_finite_rows(test[0])
    probe = key.removeprefix("probe/")
    if bad_train or bad_test:
        logger.error(
            "probe %s failed: %d of %d training and %d of %d test features are not finite (a diverged "
            "model?); reported as NaN",
            probe, bad_train, len(train[0]), bad_test, len(test[0]),
        )  # fmt: skip
        return math.nan
    if not len(train[0]) or not len(test[0]):
        logger.error(
            "probe %s failed: %d training and %d test features (images left out?); reported as NaN",
            probe, len(train[0]), len(test[0]),
        )  # fmt: skip
        return math.nan
    accuracy = classify(*train, *test, num_classes)
    if math.isnan(accuracy):
        logger.error("probe %s failed: its scores are not finite (huge features?); reported as NaN", probe)
    return accuracy


def _classify_all(
    features: dict[str, tuple[tuple[dict[str, Tensor], Tensor], tuple[dict[str, Tensor], Tensor]]],
    data: ProbeData,
    settings: ProbeSettings,
) -> dict[str, float]:
    """The accuracies of every probe from the embedded ``{"image" | "box": (train, test)}`` splits."""
    s = settings

    def knn(train_x, train_y, test_x, test_y, num_classes):
        return knn_accuracy(
            train_x, train_y, test_x, test_y, num_classes, s.knn_k, s.knn_temperature, s.knn_normalization
        )

    def linear(train_x, train_y, test_x, test_y, num_classes):
        return linear_probe_accuracy(
            train_x, train_y, test_x, test_y, num_classes,
            steps=s.linear_steps, lr=s.linear_lr, weight_decay=s.linear_weight_decay, seed=s.seed,
        )  # fmt: skip

    none = torch.zeros(0, 0)  # the features of a split none of whose images decoded
    results = {}
    if "image" in features:
        (train_x, train_y), (val_x, val_y) = features["image"]
        train, val = (train_x.get("image", none), train_y), (val_x.get("image", none), val_y)
        results["probe/image_knn"] = _score("probe/image_knn", knn, train, val, len(data.image_classes))
    if "box" in features:
        (train_x, train_y), (test_x, test_y) = features["box"]
        for readout, suffix in (("own", ""), ("shared", "_shared")):
            for name, classify in (("knn", knn), ("linear", linear)):
                key = f"probe/object_{name}{suffix}"
                if readout == "shared" and "own" in train_x and "shared" not in train_x:
                    results[key] = results[f"probe/object_{name}"]  # the own readout is the shared one
                    continue
                train, test = (train_x.get(readout, none), train_y), (test_x.get(readout, none), test_y)
                results[key] = _score(key, classify, train, test, len(data.box_classes))
    return results


def run_probes(encoder: ProbeEncoder, data: ProbeData, settings: ProbeSettings) -> dict[str, float]:
    """The configured probes' accuracies in percent, the :data:`PROBE_KEYS` whose data is set (NaN: failed).

    Every process embeds its share; the classifiers run once, in the main process, and every process
    returns their results."""
    features = {}
    with torch.autocast(encoder.device.type, enabled=False):
        if data.image_train is not None:
            splits = (data.image_train, data.image_val)
            features["image"] = tuple(embed_split(encoder, split, settings.batch_size) for split in splits)
        if data.box_train is not None:
            splits = (data.box_train, data.box_test)
            features["box"] = tuple(embed_split(encoder, split, settings.batch_size) for split in splits)
    results = _classify_all(features, data, settings) if comm.is_main_process() else None
    return comm.all_gather(results)[0]


class ProbeEvaluator:
    """Evaluates weights on fixed probe data; the encoder is built once, from the first weights' architecture.

    ``evaluator(weights)`` loads converted weights and returns :func:`run_probes`' results plus
    ``probe/seconds``. ``architecture``: that of the encoder, once built.
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
        self.architecture: ProbeArchitecture | None = None

    def build_encoder(self, weights: Mapping[str, np.ndarray]) -> ProbeEncoder:
        """(Re)build the encoder for the architecture of ``weights`` (weights not loaded)."""
        self.architecture = architecture_from_weights(weights, self.stride_in_1x1)
        s = self.settings
        self.encoder = build_probe_encoder(self.architecture, s.pixel_mean, s.pixel_std, self.device)
        logger.info("probe readouts: %s", describe_readouts(self.architecture.kind))
        return self.encoder

    def __call__(self, weights: Mapping[str, np.ndarray]) -> dict[str, float]:
        start = time.perf_counter()
        if self.encoder is None:
            self.build_encoder(weights)
        self.encoder.load_weights(weights)
        results = run_probes(self.encoder, self.data, self.settings)
        results["probe/seconds"] = time.perf_counter() - start
        return results


def describe_readouts(kind: str) -> str:
    """The object-level readouts of an encoder of ``kind`` in words."""
    own = READOUTS["own"][kind]
    if kind == "c4":
        return f"object_* and object_*_shared are both {own}"
    return f"object_* (own): {own}; object_*_shared: {READOUTS['shared']}"


def format_results(results: Mapping[str, float]) -> str:
    """One line of :class:`ProbeEvaluator` results: ``image_knn 12.3%, object_knn FAILED (7.8 s)``."""
    parts = [
        f"{k.removeprefix('probe/')} " + ("FAILED" if math.isnan(v) else f"{v:.1f}%")
        for k, v in results.items()
        if k != "probe/seconds"
    ]
    return ", ".join(parts) + f" ({results['probe/seconds']:.1f} s)"
