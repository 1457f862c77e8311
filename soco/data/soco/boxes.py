"""Box geometry of SoCo's views: proposal selection, jitter, clipping, padding, flips, levels, correspondence.

Coordinate convention (used by every function here and by the SoCo models):

* Boxes are continuous ``(x1, y1, x2, y2)`` float arrays in the pixel model of Detectron2 and ``ROIAlignV2``:
  pixel ``i`` covers ``[i, i + 1)``, so a box's width is ``x2 - x1`` and a whole ``W x H`` image is
  ``(0, 0, W, H)``.
* A proposal ``[x, y, w, h]`` of the SoCo JSON / proposal store has ``w = max_x - min_x`` (inclusive pixel
  extent minus one), so it covers pixels ``x .. x + w`` and becomes ``(x, y, x + w + 1, y + h + 1)``.
  (The original code used ``x2 = x + w - 1`` as an inclusive end, i.e. a box two pixels narrower; we keep
  the proposal's true extent.)
* Every proposal carries an integer id: its 1-based position in the image's proposal list. Id 0 marks the
  whole-view fallback box used when nothing of a selection survives clipping (the original reused id 1,
  which could falsely match a real proposal).

Randomness comes from ``rng``, any object with NumPy's legacy random API (the seeded ``numpy.random`` module
by default, a ``numpy.random.RandomState`` in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FALLBACK_ID = 0


@dataclass(frozen=True)
class CropWindow:
    """A crop of the original image, in its pixels: columns [left, left + width), rows [top, top + height)."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


@dataclass
class BoxSet:
    """Boxes (K, 4) continuous xyxy in some frame (image, crop window or view pixels) and their ids (K,)."""

    boxes: np.ndarray
    ids: np.ndarray


def whole_image_window(width: int, height: int) -> CropWindow:
    """The crop window of V1: the whole image (later squashed to a square view)."""
    return CropWindow(0, 0, width, height)


def intersect_windows(a: CropWindow, b: CropWindow) -> CropWindow | None:
    """The common part of two windows, or None when they do not overlap."""
    left, top = max(a.left, b.left), max(a.top, b.top)
    right, bottom = min(a.right, b.right), min(a.bottom, b.bottom)
    if right <= left or bottom <= top:
        return None
    return CropWindow(left, top, right - left, bottom - top)


def proposals_to_boxes(proposals: np.ndarray | None, width: int, height: int) -> BoxSet:
    """Proposals (N, 4) xywh (``w = max_x - min_x``) -> continuous xyxy boxes with ids 1..N.

    An image without proposals (N = 0, or None) gets the whole image as its single proposal, as in SoCo.
    """
    if proposals is None or len(proposals) == 0:
        return BoxSet(np.array([[0.0, 0.0, width, height]]), np.array([1], dtype=np.int64))
    proposals = np.asarray(proposals, dtype=np.float64)
    if proposals.ndim != 2 or proposals.shape[1] != 4:
        raise ValueError(f"proposals must have shape (N, 4) as [x, y, w, h], got {proposals.shape}")
    if (proposals[:, 2:] < 0).any():
        raise ValueError("proposals must have non-negative width and height ([x, y, w, h])")
    boxes = np.concatenate([proposals[:, :2], proposals[:, :2] + proposals[:, 2:] + 1.0], axis=1)
    return BoxSet(boxes, np.arange(1, len(boxes) + 1, dtype=np.int64))


def overlaps_window(boxes: np.ndarray, window: CropWindow) -> np.ndarray:
    """(N,) bool: the box shares a positive area with the window."""
    return (
        (boxes[:, 0] < window.right)
        & (boxes[:, 2] > window.left)
        & (boxes[:, 1] < window.bottom)
        & (boxes[:, 3] > window.top)
    )


def sample_overlapping(boxes: np.ndarray, window: CropWindow | None, k: int, rng=np.random) -> np.ndarray:
    """Indices of up to ``k`` boxes overlapping ``window``, drawn without replacement."""
    if window is None:
        return np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(overlaps_window(boxes, window))
    if len(candidates) <= k:
        return candidates
    return rng.choice(candidates, size=k, replace=False)


def select_with_retries(
    boxes: np.ndarray,
    anchor: CropWindow,
    draw_crops: Callable[[], list[CropWindow]],
    k: int,
    max_tries: int,
    rng=np.random,
) -> tuple[list[CropWindow], list[np.ndarray]]:
    """Draw crops until each pair (anchor, crop) has enough proposals in common; select K boxes per pair.

    For every crop, the candidates are the proposals overlapping ``anchor`` intersected with the crop. A try
    is accepted when every pair has at least ``least_common`` candidates; ``least_common`` starts at
    ``max(k // 2, 1)`` and halves (down to 1) after each failed try. After ``max_tries`` failures the last
    draw is used as it is (selections may then be empty). Returns the crops and, per crop, the indices
    into ``boxes`` of up to ``k`` proposals drawn without replacement.
    """
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    least_common = max(k // 2, 1)
    for _ in range(max_tries):
        crops = draw_crops()
        selections = [sample_overlapping(boxes, intersect_windows(anchor, c), k, rng) for c in crops]
        if all(len(s) >= least_common for s in selections):
            break
        least_common = max(least_common // 2, 1)
    return crops, selections


def jitter_boxes(boxes: np.ndarray, prob: float, ratio: float, rng=np.random) -> np.ndarray:
    """With probability ``prob`` per box: x1, y1 += U(-r, r) x (w, h); w, h *= 1 + U(-r, r), r = ``ratio``."""
    boxes = boxes.copy()
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    noise = rng.uniform(-ratio, ratio, size=(len(boxes), 4))
    chosen = rng.uniform(0.0, 1.0, size=len(boxes)) < prob
    noise[~chosen] = 0.0
    boxes[:, 0] += noise[:, 0] * widths
    boxes[:, 1] += noise[:, 1] * heights
    boxes[:, 2] = boxes[:, 0] + widths * (1.0 + noise[:, 2])
    boxes[:, 3] = boxes[:, 1] + heights * (1.0 + noise[:, 3])
    return boxes


def clip_to_window(box_set: BoxSet, window: CropWindow) -> BoxSet:
    """Intersect boxes (image pixels) with a window and express them in window-relative pixels.

    Boxes left without area are dropped; if none is left, the whole window with id 0 replaces them.
    """
    boxes = box_set.boxes.copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], window.left, window.right) - window.left
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], window.top, window.bottom) - window.top
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not keep.any():
        whole = np.array([[0.0, 0.0, window.width, window.height]])
        return BoxSet(whole, np.array([FALLBACK_ID], dtype=np.int64))
    return BoxSet(boxes[keep], box_set.ids[keep])


def pad_with_common(a: BoxSet, b: BoxSet, k: int, rng=np.random) -> tuple[BoxSet, BoxSet]:
    """Pad both sets of a view pair to exactly ``k`` boxes by re-drawing (with replacement) boxes whose id
    is in both sets, so that the padding adds matched pairs. Without a common id (both views fell back
    differently) each set repeats its own boxes and the pair has no match.
    """
    # (sets of at most K ids: Python's set beats np.intersect1d / np.isin by an order of magnitude here)
    common = set(a.ids.tolist()).intersection(b.ids.tolist())
    return _pad(a, common, k, rng), _pad(b, common, k, rng)


def _pad(box_set: BoxSet, common_ids: set[int], k: int, rng) -> BoxSet:
    ids = box_set.ids.tolist()
    if len(ids) > k:
        raise ValueError(f"a box set has {len(ids)} boxes, more than K = {k}")
    if len(ids) == k:
        return box_set  # nothing to draw (a draw of size 0 does not advance the RNG either)
    pool = [i for i, box_id in enumerate(ids) if box_id in common_ids] or list(range(len(ids)))
    extra = rng.choice(np.array(pool, dtype=np.int64), size=k - len(ids), replace=True)
    order = np.concatenate([np.arange(len(ids)), extra]).astype(np.int64)
    return BoxSet(box_set.boxes[order], box_set.ids[order])


def window_to_view(boxes: np.ndarray, window: CropWindow, view_size: int) -> np.ndarray:
    """Window-relative boxes -> pixels of the square view the window is resized to."""
    scale = np.array([view_size / window.width, view_size / window.height] * 2)
    return boxes * scale


def flip_boxes(boxes: np.ndarray, view_width: float) -> np.ndarray:
    """Mirror boxes horizontally in a view of the given width: x1' = W - x2, x2' = W - x1."""
    flipped = boxes.copy()
    flipped[:, 0] = view_width - boxes[:, 2]
    flipped[:, 2] = view_width - boxes[:, 0]
    return flipped


def assign_levels(boxes: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """SoCo's scale-aware assignment: level j is the first with sqrt(w * h) <= thresholds[j] (view pixels).

    With the paper's thresholds (48, 96, 192, 224): <= 48 -> 0 (P2), <= 96 -> 1 (P3), <= 192 -> 2 (P4),
    <= 224 -> 3 (P5). A box above the last threshold has no level (the original leaves it out of every
    level); it cannot occur when the views are no larger than the last threshold, so it is an error here.
    Returns (K,) int64.
    """
    sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    # Resizing to view pixels leaves float noise (a whole 96 px view can measure 96.00000000000001).
    sizes = np.round(sizes, 6)
    levels = np.searchsorted(np.asarray(thresholds, dtype=np.float64), sizes, side="left")
    if (levels >= len(thresholds)).any():
        raise ValueError(
            f"box size sqrt(w*h) = {sizes.max():.1f} px exceeds the last level threshold {thresholds[-1]}; "
            "views must not be larger than SOCO.BOXES.LEVEL_THRESHOLDS[-1]"
        )
    return levels.astype(np.int64)


def level_slot_ids(ids: np.ndarray, levels: np.ndarray, num_levels: int, empty: int) -> np.ndarray:
    """Ids placed level-major: slot ``level * K + i`` holds box i's id, every other slot holds ``empty``.

    Returns (num_levels * K,) int64.
    """
    k = len(ids)
    slots = np.full(num_levels * k, empty, dtype=np.int64)
    slots[levels * k + np.arange(k)] = ids
    return slots


def correspondence_matrix(slots_a: np.ndarray, slots_b: np.ndarray) -> np.ndarray:
    """C[i, j] = 1 where slot i of view a and slot j of view b hold the same proposal id. (A, B) float32.

    The two sets must use different negative ``empty`` values so that empty slots never match.
    """
    return (slots_a[:, None] == slots_b[None, :]).astype(np.float32)
