"""Selective search exactly as SoCo ran it, vectorised.

SoCo generated its proposals with a copy of the AlpacaDB ``selectivesearch`` package (0.4) whose only
change is the texture-histogram range, (0, 255) instead of (0, 1). This module returns the same boxes
in the same order, with the per-pixel Python loops replaced by array operations:

1. Felzenszwalb segmentation (scikit-image, same call) gives the initial regions. Regions are ordered
   by the raster position of their first pixel, as the package's dict is filled.
2. Per region: bounding box (``scipy.ndimage.find_objects``), size, and histograms via ``np.bincount``.
   The colour histogram is the package's HSV histogram with 25 bins over (0, 255) per channel on the
   unscaled HSV of the 0..255 image: H and S lie in [0, 1], so they always fill bin 0 (each contributes
   exactly 1.0 to the L1-normalised histogram) and only V = max(R, G, B) is binned. The texture
   histogram bins the 8-neighbour LBP of each RGB channel into 10 bins over (0, 255).
3. Neighbours: region ``b`` (later in order) is a neighbour of ``a`` when a corner of ``b``'s box lies
   strictly inside ``a``'s box (the package's one-sided test).
4. Greedy merging of the most similar pair. The package takes ``sorted(S.items())[-1]`` over a dict of
   pair similarities, so among equal similarities the pair inserted last wins; a heap keyed by
   ``(-similarity, -insertion number)`` with lazy deletion reproduces that choice. Similarities are
   summed in the package's order (sequential sums over bins, then colour + texture + size + fill) so
   the floating-point values, and hence the ties, are bit-identical.

Boxes are ``(x, y, w, h)`` with ``w = max_x - min_x``; all regions are returned (initial segments first,
then every merge, duplicates included).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb
from skimage.util import img_as_float

# SoCo's parameters (generate_imagenet_ss_proposals.py), applied to the full-resolution RGB image.
SOCO_SCALE = 300.0
SOCO_SIGMA = 0.9
SOCO_MIN_SIZE = 100

COLOUR_BINS = 25
TEXTURE_BINS = 10
# H and S always fall in bin 0 of their histograms, which then hold exactly 1.0 each: the colour
# intersection of any two regions starts from this constant before the V bins are added.
_COLOUR_HS_INTERSECTION = 2.0
_BLOCK_ROWS = 512  # rows of the (n, n) or (n, W) comparisons evaluated at once, to bound memory


def _histogram_bin_lut(bins: int, value_range: tuple[float, float]) -> np.ndarray:
    """Bin index that ``np.histogram(values, bins, value_range)`` gives to each integer 0..255."""
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    values = np.arange(256, dtype=np.float64)
    return np.minimum(np.searchsorted(edges, values, side="right") - 1, bins - 1).astype(np.intp)


_COLOUR_LUT = _histogram_bin_lut(COLOUR_BINS, (0.0, 255.0))
_TEXTURE_LUT = _histogram_bin_lut(TEXTURE_BINS, (0.0, 255.0))

# LBP sampling points (P=8, R=1) exactly as scikit-image places them: offsets rounded to 5 decimals
_LBP_POINTS = 8
_LBP_ANGLES = 2 * np.pi * np.arange(_LBP_POINTS, dtype=np.float64) / _LBP_POINTS
_LBP_ROW_OFFSETS = np.round(-np.sin(_LBP_ANGLES), 5)
_LBP_COL_OFFSETS = np.round(np.cos(_LBP_ANGLES), 5)


def _interpolation_axis(length: int, offset: float) -> tuple[int, int, np.ndarray]:
    """For positions ``k + offset`` (k = 0..length-1): floor and ceil shifts, and the fractions (length,).

    The shifts are the same for every k because the offsets are never within rounding of an integer
    unless they are one; the fractions are computed per k as scikit-image does (``pos - floor(pos)``).
    """
    positions = np.arange(length, dtype=np.float64) + offset
    floors = np.floor(positions)
    return int(np.floor(offset)), int(np.ceil(offset)), positions - floors


def lbp_codes(channel: np.ndarray) -> np.ndarray:
    """8-neighbour, radius-1 local binary pattern of one channel (H, W), as uint8 codes (H, W).

    Bit-identical to ``skimage.feature.local_binary_pattern(channel, 8, 1.0)``: diagonal neighbours are
    bilinearly interpolated with the same floating-point operations in the same order, pixels outside
    the image count as 0, and bit i is set when ``neighbour_i - centre >= 0``.
    """
    height, width = channel.shape
    padded = np.zeros((height + 2, width + 2))
    padded[1:-1, 1:-1] = channel
    centre = padded[1:-1, 1:-1]
    codes = np.zeros((height, width), dtype=np.uint8)
    top, bottom, term = (np.empty((height, width)) for _ in range(3))
    bits = np.empty((height, width), dtype=bool)
    for point in range(_LBP_POINTS):
        row_low, row_high, row_fraction = _interpolation_axis(height, _LBP_ROW_OFFSETS[point])
        col_low, col_high, col_fraction = _interpolation_axis(width, _LBP_COL_OFFSETS[point])
        rows_low = slice(1 + row_low, 1 + row_low + height)
        rows_high = slice(1 + row_high, 1 + row_high + height)
        cols_low = slice(1 + col_low, 1 + col_low + width)
        cols_high = slice(1 + col_high, 1 + col_high + width)
        if row_low == row_high and col_low == col_high:  # an axis neighbour: no interpolation
            np.greater_equal(padded[rows_low, cols_low], centre, out=bits)
        else:
            # top = (1 - dc) * p[minr, minc] + dc * p[minr, maxc]; bottom likewise on maxr
            np.multiply(padded[rows_low, cols_low], 1 - col_fraction, out=top)
            np.multiply(padded[rows_low, cols_high], col_fraction, out=term)
            top += term
            np.multiply(padded[rows_high, cols_low], 1 - col_fraction, out=bottom)
            np.multiply(padded[rows_high, cols_high], col_fraction, out=term)
            bottom += term
            # value = (1 - dr) * top + dr * bottom
            top *= (1 - row_fraction)[:, None]
            bottom *= row_fraction[:, None]
            top += bottom
            top -= centre
            np.greater_equal(top, 0, out=bits)
        codes |= bits.view(np.uint8) << np.uint8(point)
    return codes


@dataclass
class Regions:
    """Initial regions in first-appearance order.

    ``boxes``: int64 (n, 4) as (min_x, min_y, max_x, max_y) inclusive; ``sizes``: int64 (n,);
    ``colour``: float64 (n, 25) normalised V histogram; ``texture``: float64 (n, 30) normalised LBP
    histogram (10 bins per RGB channel).
    """

    boxes: np.ndarray
    sizes: np.ndarray
    colour: np.ndarray
    texture: np.ndarray


def initial_segments(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """Felzenszwalb label map (H, W) of an RGB uint8 image, labels 0..n-1, as the package computes it."""
    return felzenszwalb(img_as_float(image), scale=scale, sigma=sigma, min_size=min_size)


def _first_appearance_order(labels: np.ndarray, min_y: np.ndarray) -> np.ndarray:
    """Labels sorted by the raster index of their first pixel (the row min_y, then the first column)."""
    n = len(min_y)
    first_x = np.empty(n, dtype=np.int64)
    for start in range(0, n, _BLOCK_ROWS):
        ids = np.arange(start, min(start + _BLOCK_ROWS, n))
        first_x[ids] = np.argmax(labels[min_y[ids]] == ids[:, None], axis=1)
    return np.lexsort((first_x, min_y))


def extract_regions(image: np.ndarray, labels: np.ndarray) -> Regions:
    """Boxes, sizes and colour/texture histograms of every initial region (image (H, W, 3) uint8)."""
    labels = np.asarray(labels, dtype=np.intp)
    slices = ndimage.find_objects(labels + 1)
    if any(s is None for s in slices):  # make the labels contiguous; their order is unchanged
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        slices = ndimage.find_objects(labels + 1)
    n = len(slices)
    # (n, 4): min_x, min_y, max_x, max_y (inclusive)
    boxes = np.array([(sx.start, sy.start, sx.stop - 1, sy.stop - 1) for sy, sx in slices], dtype=np.int64)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n)

    value_bins = _COLOUR_LUT[image.max(axis=2).ravel()]  # HSV value V = max(R, G, B), unscaled
    colour = np.bincount(flat * COLOUR_BINS + value_bins, minlength=n * COLOUR_BINS)
    colour = colour.reshape(n, COLOUR_BINS) / sizes[:, None]

    texture_index = np.empty((3, flat.size), dtype=np.intp)
    for channel in range(3):
        texture_index[channel] = flat * (3 * TEXTURE_BINS) + channel * TEXTURE_BINS
        texture_index[channel] += _TEXTURE_LUT[lbp_codes(image[:, :, channel]).ravel()]
    texture = np.bincount(texture_index.ravel(), minlength=n * 3 * TEXTURE_BINS)
    texture = texture.reshape(n, 3 * TEXTURE_BINS) / sizes[:, None]

    order = _first_appearance_order(labels, boxes[:, 1])
    return Regions(boxes[order], sizes[order], colour[order], texture[order])


def _strictly_inside(coordinate: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(rows, n) bool: low[r] < coordinate[k] < high[r]."""
    return (low[:, None] < coordinate[None, :]) & (coordinate[None, :] < high[:, None])


def neighbour_pairs(boxes: np.ndarray) -> np.ndarray:
    """(P, 2) index pairs (a, b), a < b, where a corner of box b lies strictly inside box a.

    Rows come in the package's order: by a, then by b. ``boxes``: (n, 4) min_x, min_y, max_x, max_y.
    """
    # the four corner tests (min_x | max_x) x (min_y | max_y) factor into "an x inside and a y inside"
    min_x, min_y, max_x, max_y = boxes.T
    pairs = []
    for start in range(0, len(boxes), _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        x_inside = _strictly_inside(min_x, min_x[rows], max_x[rows]) | _strictly_inside(
            max_x, min_x[rows], max_x[rows]
        )
        y_inside = _strictly_inside(min_y, min_y[rows], max_y[rows]) | _strictly_inside(
            max_y, min_y[rows], max_y[rows]
        )
        a, b = np.nonzero(np.triu(x_inside & y_inside, k=start + 1))
        pairs.append(np.stack([a + start, b], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


class _RegionTable:
    """Growing arrays of region features: the n initial regions, then one row per merge."""

    def __init__(self, regions: Regions, image_size: int):
        n = len(regions.sizes)
        capacity = max(2 * n - 1, 1)
        self.image_size = image_size
        self.count = n
        self.boxes = np.zeros((capacity, 4), dtype=np.int64)
        self.sizes = np.zeros(capacity, dtype=np.int64)
        # colour histogram with a leading column holding the H+S intersection, so one cumulative sum
        # along a row adds the terms in the package's order
        self.colour = np.zeros((capacity, 1 + COLOUR_BINS))
        self.texture = np.zeros((capacity, 3 * TEXTURE_BINS))
        self.boxes[:n], self.sizes[:n], self.texture[:n] = regions.boxes, regions.sizes, regions.texture
        self.colour[:n, 0] = _COLOUR_HS_INTERSECTION
        self.colour[:n, 1:] = regions.colour

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Package similarity of region pairs (a[k], b[k]): colour + texture + size + fill, (P,) float64."""
        colour = np.minimum(self.colour[a], self.colour[b]).cumsum(axis=1)[:, -1]
        texture = np.minimum(self.texture[a], self.texture[b]).cumsum(axis=1)[:, -1]
        pair_size = self.sizes[a] + self.sizes[b]
        size = 1.0 - pair_size / self.image_size
        box_a, box_b = self.boxes[a], self.boxes[b]
        union_w = np.maximum(box_a[:, 2], box_b[:, 2]) - np.minimum(box_a[:, 0], box_b[:, 0])
        union_h = np.maximum(box_a[:, 3], box_b[:, 3]) - np.minimum(box_a[:, 1], box_b[:, 1])
        fill = 1.0 - (union_w * union_h - self.sizes[a] - self.sizes[b]) / self.image_size
        return colour + texture + size + fill

    def merge(self, i: int, j: int) -> int:
        """Append the union of regions i and j; return its index."""
        t = self.count
        self.count += 1
        size_i, size_j = self.sizes[i], self.sizes[j]
        merged_size = size_i + size_j
        self.sizes[t] = merged_size
        self.boxes[t, :2] = np.minimum(self.boxes[i, :2], self.boxes[j, :2])
        self.boxes[t, 2:] = np.maximum(self.boxes[i, 2:], self.boxes[j, 2:])
        self.colour[t] = (self.colour[i] * size_i + self.colour[j] * size_j) / merged_size
        self.colour[t, 0] = _COLOUR_HS_INTERSECTION
        self.texture[t] = (self.texture[i] * size_i + self.texture[j] * size_j) / merged_size
        return t


def hierarchical_grouping(regions: Regions, image_size: int) -> np.ndarray:
    """Greedy merging of the most similar neighbours; (min_x, min_y, max_x, max_y) of all regions.

    Returns int64 (n + merges, 4): the initial regions, then the merged ones in creation order.
    """
    table = _RegionTable(regions, image_size)
    pairs = neighbour_pairs(regions.boxes)
    alive = np.ones(len(table.sizes), dtype=bool)
    # adjacency[r]: (insertion number, other region) of every pair r belongs to, in insertion order
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(len(table.sizes))]

    def new_pairs(a: list[int], b: list[int], first_seq: int) -> list[tuple[float, int, int, int]]:
        """Heap entries of the pairs (a[k], b[k]), numbered from first_seq; records the adjacency."""
        sims = table.similarity(np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp))
        entries = []
        for seq, (ra, rb, sim) in enumerate(zip(a, b, sims.tolist(), strict=True), start=first_seq):
            adjacency[ra].append((seq, rb))
            adjacency[rb].append((seq, ra))
            entries.append((-sim, -seq, ra, rb))
        return entries

    heap = new_pairs(pairs[:, 0].tolist(), pairs[:, 1].tolist(), 0)
    next_seq = len(heap)
    heapq.heapify(heap)
    while heap:
        _, _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue  # stale: one side was merged already
        alive[i] = alive[j] = False
        t = table.merge(i, j)
        # the package recomputes the new region's similarity with every former neighbour of i or j,
        # in the dict order of the deleted pairs; a region adjacent to both keeps its first position
        linked = sorted(entry for entry in adjacency[i] + adjacency[j] if alive[entry[1]])
        others = list(dict.fromkeys(other for _, other in linked))
        if others:
            for entry in new_pairs([t] * len(others), others, next_seq):
                heapq.heappush(heap, entry)
            next_seq += len(others)
    return table.boxes[: table.count]


def selective_search(
    image: np.ndarray,
    scale: float = SOCO_SCALE,
    sigma: float = SOCO_SIGMA,
    min_size: int = SOCO_MIN_SIZE,
) -> np.ndarray:
    """All selective-search regions of an RGB uint8 image (H, W, 3) as int64 (M, 4) ``(x, y, w, h)``.

    Same boxes, same order as ``selectivesearch.selective_search`` 0.4 with SoCo's texture range.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    labels = initial_segments(image, scale, sigma, min_size)
    regions = extract_regions(image, labels)
    corners = hierarchical_grouping(regions, image.shape[0] * image.shape[1])
    return np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)  # (M, 4) xywh
