"""A re-creation of the original SoCo FPN per-sample pipeline, for cost comparisons only.

This is NOT the original code: it was written for this benchmark from the description of the original's
``ImageFolderImageAsymBboxAwareMultiJitter1Cutout`` in /work/shared/reference/soco.md (section 3: whole-image
V1 at 224, independent random-resized crops V2 at 224 and V3 at 112 with scale (0.5, 1), up to 5 tries with a
halving ``least_common``, K = 4 proposals without replacement, jitter of V1's boxes (p 0.5, ratio 0.1),
clipping with a whole-view fallback, padding with common ids, level assignment by sqrt(area) against
(48, 96, 192, 224), 16 x 16 correspondence matrices, box-aware flips, BYOL colour pipelines with torchvision
on PIL, ToTensor + Normalize, cutout in the V2 and V3 boxes: the original's odd-sided inclusive square, on a
copy of the view). It keeps the original's conventions where they cost something (inclusive
``x2 = x + w - 1`` boxes, the ``id = 1`` fallback) and makes the same kind and number of image operations,
so its time per sample is the original's on the same images and core.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
AWARE_RANGE = (48, 96, 192, 224)
K = 4


class _PILBlur:
    def __call__(self, image: Image.Image) -> Image.Image:
        return image.filter(ImageFilter.GaussianBlur(radius=float(np.random.uniform(0.1, 2.0))))


def _post(blur_prob: float, solarize_prob: float) -> T.Compose:
    steps = [
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([_PILBlur()], p=blur_prob),
    ]
    if solarize_prob:
        steps.append(T.RandomSolarize(128, p=solarize_prob))
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


class OriginalSoCoFPNViews:
    """``__call__(image, proposals xywh)`` -> the original's tuple of views, boxes and correspondences."""

    def __init__(self) -> None:
        self.post_1, self.post_2 = _post(1.0, 0.0), _post(0.1, 0.2)

    @staticmethod
    def _crop_params(image: Image.Image, size: int) -> tuple[int, int, int, int]:
        return T.RandomResizedCrop.get_params(image, (0.5, 1.0), (3 / 4, 4 / 3))

    @staticmethod
    def _overlapping(props: np.ndarray, i: int, j: int, h: int, w: int) -> np.ndarray:
        x1, y1, x2, y2 = j, i, j + w - 1, i + h - 1  # the crop window, inclusive ends
        keep = (props[:, 0] < x2) & (props[:, 2] > x1) & (props[:, 1] < y2) & (props[:, 3] > y1)
        candidates = np.flatnonzero(keep)
        if len(candidates) > K:
            candidates = np.random.choice(candidates, K, replace=False)
        return props[candidates]

    @staticmethod
    def _jitter(boxes: np.ndarray) -> np.ndarray:
        boxes = boxes.copy()
        for row in boxes:
            if np.random.uniform() < 0.5:
                w, h = row[2] - row[0] + 1, row[3] - row[1] + 1
                u = np.random.uniform(-0.1, 0.1, 4)
                row[0], row[1] = row[0] + u[0] * w, row[1] + u[1] * h
                row[2], row[3] = row[0] + w * (1 + u[2]) - 1, row[1] + h * (1 + u[3]) - 1
        return boxes

    @staticmethod
    def _clip(boxes: np.ndarray, i: int, j: int, h: int, w: int) -> np.ndarray:
        out = []
        for x1, y1, x2, y2, box_id in boxes:
            nx1, ny1 = max(x1, j), max(y1, i)
            nx2, ny2 = min(x2, j + w - 1), min(y2, i + h - 1)
            if nx2 > nx1 and ny2 > ny1:
                out.append([nx1 - j, ny1 - i, nx2 - j, ny2 - i, box_id])
        return np.array(out) if out else np.array([[0, 0, w - 1, h - 1, 1]], dtype=np.float64)

    @staticmethod
    def _pad(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        common = np.intersect1d(a[:, 4], b[:, 4])
        padded = []
        for boxes in (a, b):
            pool = boxes[np.isin(boxes[:, 4], common)] if len(common) else boxes
            extra = pool[np.random.choice(len(pool), K - len(boxes), replace=True)]
            padded.append(np.concatenate([boxes, extra]))
        return padded[0], padded[1]

    @staticmethod
    def _level_ids(boxes: np.ndarray, h: int, w: int, size: int, empty: int) -> np.ndarray:
        ids = np.full(len(AWARE_RANGE) * K, empty)
        scaled = (boxes[:, :4] * [size / w, size / h, size / w, size / h]).astype(int)
        for index, (x1, y1, x2, y2) in enumerate(scaled):
            side = np.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))
            for level, bound in enumerate(AWARE_RANGE):
                if side <= bound:
                    ids[level * K + index] = boxes[index, 4]
                    break
        return ids

    @staticmethod
    def _normalise(boxes: np.ndarray, h: int, w: int) -> torch.Tensor:
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] /= w
        out[:, [1, 3]] /= h
        return torch.from_numpy(out)

    @staticmethod
    def _flip(image: Image.Image, boxes: list[torch.Tensor]) -> tuple[Image.Image, list[torch.Tensor]]:
        if np.random.uniform() >= 0.5:
            return image, boxes
        flipped = []
        for b in boxes:
            b = b.clone()
            b[:, 0], b[:, 2] = 1 - b[:, 2], 1 - b[:, 0]
            flipped.append(b)
        return F.hflip(image), flipped

    @staticmethod
    def _cutout(view: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """A copy of ``view`` with, per box with probability 0.5, the pixels ``c - w // 2 .. c + w // 2``
        (both ends, clamped to 224 as the original did for every view) zeroed, ``w = round(sqrt(area))``."""
        size = view.shape[-1]
        out = view.clone()
        for x1, y1, x2, y2, _ in (boxes.numpy() * [size, size, size, size, 1]).astype(int):
            if np.random.uniform() < 0.5:
                w = int(round(np.sqrt(np.random.uniform(0.1, 0.3) * (x2 - x1 + 1) * (y2 - y1 + 1))))
                cx, cy = np.random.randint(x1, x2 + 1), np.random.randint(y1, y2 + 1)  # both ends, as randint
                rows = slice(max(cy - w // 2, 0), min(cy + w // 2, 224) + 1)
                out[:, rows, max(cx - w // 2, 0) : min(cx + w // 2, 224) + 1] = 0
        return out

    def __call__(self, image: Image.Image, proposals: np.ndarray):
        width, height = image.size
        props = np.concatenate(
            [
                proposals[:, :2],
                proposals[:, :2] + proposals[:, 2:] - 1,
                np.arange(1, len(proposals) + 1)[:, None],
            ],
            axis=1,
        ).astype(np.float64)
        least_common = K // 2
        for _ in range(5):
            p2, p3 = self._crop_params(image, 224), self._crop_params(image, 112)
            sel2, sel3 = self._overlapping(props, *p2), self._overlapping(props, *p3)
            if len(sel2) >= least_common and len(sel3) >= least_common:
                break
            least_common = max(least_common // 2, 1)
        b1_12 = self._clip(self._jitter(sel2), 0, 0, height, width)
        b1_13 = self._clip(self._jitter(sel3), 0, 0, height, width)
        b2, b3 = self._clip(sel2, *p2), self._clip(sel3, *p3)
        b1_12, b2 = self._pad(b1_12, b2)
        b1_13, b3 = self._pad(b1_13, b3)
        corres = []
        for a, b, p, size in ((b1_12, b2, p2, 224), (b1_13, b3, p3, 112)):
            ids_a = self._level_ids(a, height, width, 224, -1)
            ids_b = self._level_ids(b, p[2], p[3], size, -2)
            corres.append(torch.from_numpy((ids_a[:, None] == ids_b[None, :]).astype(np.float32)))
        boxes1 = [self._normalise(b1_12, height, width), self._normalise(b1_13, height, width)]
        boxes2, boxes3 = self._normalise(b2, p2[2], p2[3]), self._normalise(b3, p3[2], p3[3])
        view1, boxes1 = self._flip(F.resize(image, [224, 224]), boxes1)
        view2, (boxes2,) = self._flip(F.resized_crop(image, *p2, [224, 224]), [boxes2])
        view3, (boxes3,) = self._flip(F.resized_crop(image, *p3, [112, 112]), [boxes3])
        view1, view2, view3 = self.post_1(view1), self.post_2(view2), self.post_2(view3)
        view2, view3 = self._cutout(view2, boxes2), self._cutout(view3, boxes3)
        return view1, view2, view3, *boxes1, boxes2, boxes3, *corres
