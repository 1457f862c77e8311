"""Speed and agreement of the proposal backends on a folder of images (used by tools/benchmarks).

Per method: seconds per image on one core, boxes per image, recall of the ``reference`` boxes at
IoU >= 0.7, and time relative to the Felzenszwalb segmentation alone (the floor for an exact port) and
to the ``selectivesearch`` package with SoCo's change (the original's cost).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .backends import PROPOSAL_BACKENDS
from .selective_search import SOCO_MIN_SIZE, SOCO_SCALE, SOCO_SIGMA, initial_segments

FELZENSZWALB_FLOOR = "felzenszwalb-floor"
PACKAGE = "selectivesearch-package"
IMAGENET_TRAIN_IMAGES = 1_281_167
# mean ImageNet-1k training image, about 400 x 350 pixels (reference notes, section 2.6)
IMAGENET_MEAN_MEGAPIXELS = 0.14


def soco_package_selective_search() -> Callable[[np.ndarray], np.ndarray]:
    """The PyPI ``selectivesearch`` 0.4 with SoCo's texture range (0, 255): the original's algorithm."""
    import selectivesearch.selectivesearch as package

    def texture_hist(pixels: np.ndarray) -> np.ndarray:
        hist = np.concatenate([np.histogram(pixels[:, c], 10, (0.0, 255.0))[0] for c in range(3)])
        return hist / len(pixels)

    def run(image: np.ndarray) -> np.ndarray:
        original = package._calc_texture_hist
        package._calc_texture_hist = texture_hist
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, regions = package.selective_search(
                    image, scale=SOCO_SCALE, sigma=SOCO_SIGMA, min_size=SOCO_MIN_SIZE
                )
        finally:
            package._calc_texture_hist = original
        return np.array([r["rect"] for r in regions], dtype=np.int64).reshape(-1, 4)

    return run


def felzenszwalb_floor(image: np.ndarray) -> np.ndarray:
    """Only the initial segmentation every exact port must run; returns no boxes."""
    initial_segments(image, SOCO_SCALE, SOCO_SIGMA, SOCO_MIN_SIZE)
    return np.zeros((0, 4), dtype=np.int64)


def pairwise_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of boxes xywh with w = max_x - min_x (inclusive pixel extents)."""
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    inter_w = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    inter_h = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    area_a = (a[..., 2] + 1) * (a[..., 3] + 1)
    area_b = (b[..., 2] + 1) * (b[..., 3] + 1)
    return inter / (area_a + area_b - inter)


def recall(targets: np.ndarray, candidates: np.ndarray, threshold: float = 0.7) -> float:
    """Fraction of ``targets`` boxes matched by some candidate at IoU >= threshold."""
    if len(targets) == 0:
        return 1.0
    if len(candidates) == 0:
        return 0.0
    return float((pairwise_iou_xywh(targets, candidates).max(axis=1) >= threshold).mean())


@dataclass
class MethodStats:
    seconds: list[float] = field(default_factory=list)
    boxes: list[int] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)


def benchmark(
    images: dict[str, np.ndarray], methods: list[str], repeats: int = 1, log: Callable[[str], None] = print
) -> dict[str, MethodStats]:
    """CPU seconds of every method on every image (best of ``repeats``; every method is single-threaded).

    ``reference`` is always run too: its boxes are the targets of the recall.
    """
    functions: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name in methods:
        if name == FELZENSZWALB_FLOOR:
            functions[name] = felzenszwalb_floor
        elif name == PACKAGE:
            functions[name] = soco_package_selective_search()
        else:
            functions[name] = PROPOSAL_BACKENDS[name]
    stats = {name: MethodStats() for name in methods}
    for image_name, image in images.items():
        reference_boxes = PROPOSAL_BACKENDS["reference"](image)
        best = dict.fromkeys(functions, float("inf"))
        boxes = {}
        for _ in range(repeats):  # methods interleaved, so that a busy moment does not hit one only
            for name, function in functions.items():
                start = time.process_time()  # CPU time: robust to other processes sharing the cores
                boxes[name] = function(image)
                best[name] = min(best[name], time.process_time() - start)
        for name in functions:
            stats[name].seconds.append(best[name])
            if name != FELZENSZWALB_FLOOR:
                stats[name].boxes.append(len(boxes[name]))
                stats[name].recalls.append(recall(reference_boxes, boxes[name]))
                stats[name].exact.append(np.array_equal(boxes[name], reference_boxes))
            log(f"  {image_name} {image.shape[1]}x{image.shape[0]} {name}: {best[name]:.3f} s")
    return stats


def format_report(
    stats: dict[str, MethodStats],
    images: dict[str, np.ndarray],
    cores: int = 64,
    num_images: int = IMAGENET_TRAIN_IMAGES,
    target_megapixels: float = IMAGENET_MEAN_MEGAPIXELS,
) -> str:
    """Table of the per-method results with the projected wall time for ``num_images`` on ``cores``.

    ``wall h`` uses the measured mean time per image; ``wall h @px`` scales it linearly to images of
    ``target_megapixels`` (ImageNet's mean size by default).
    """
    megapixels = float(np.mean([im.shape[0] * im.shape[1] for im in images.values()])) / 1e6
    floor = np.mean(stats[FELZENSZWALB_FLOOR].seconds) if FELZENSZWALB_FLOOR in stats else None
    package = np.mean(stats[PACKAGE].seconds) if PACKAGE in stats else None
    lines = [
        f"{len(images)} images, mean {megapixels:.3f} Mpx, CPU seconds on one core; projection: "
        f"{num_images} images on {cores} cores, as measured and scaled to {target_megapixels:.3f} Mpx",
        "",
        "| method | s/img/core | median | boxes/img | recall@0.7 | identical | x floor | x package "
        "| wall h | wall h @px |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in stats.items():
        mean = float(np.mean(s.seconds))
        boxes = f"{np.mean(s.boxes):.0f}" if s.boxes else "-"
        rec = f"{np.mean(s.recalls):.3f}" if s.recalls else "-"
        identical = f"{sum(s.exact)}/{len(s.exact)}" if s.exact else "-"
        vs_floor = f"{mean / floor:.2f}" if floor else "-"
        vs_package = f"{mean / package:.2f}" if package else "-"
        hours = mean * num_images / cores / 3600
        cells = [
            name, f"{mean:.3f}", f"{np.median(s.seconds):.3f}", boxes, rec, identical, vs_floor, vs_package,
            f"{hours:.2f}", f"{hours * target_megapixels / megapixels:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
