"""Lossless compact encoding of one image's boxes for the proposal store.

Selective search returns the same box many times (a merge often has the box of one of its parts),
and SoCo keeps the duplicates, so about half of the filtered boxes are repeats. An image's boxes
(N, 4) are stored as

* its U distinct boxes, every coordinate written with ``bits`` bits (enough for the largest
  coordinate of the image, 9 for a 500-pixel ImageNet photo) and packed into bytes, MSB first;
* an index (N,) into those distinct boxes, which restores the original list and order.

For ImageNet this is about 4.5 bytes per distinct box plus 1 byte per box, instead of 8 bytes per box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BITS = 16


@dataclass
class EncodedBoxes:
    """``packed``: uint8 (ceil(4 U bits / 8),); ``index``: int64 (N,) into the U distinct boxes."""

    num_unique: int
    bits: int
    packed: np.ndarray
    index: np.ndarray


def encode_boxes(boxes: np.ndarray) -> EncodedBoxes:
    """Encode uint16 (N, 4) boxes."""
    boxes = np.asarray(boxes, dtype=np.uint16).reshape(-1, 4)
    if len(boxes) == 0:
        return EncodedBoxes(0, 1, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64))
    # one 64-bit number per box makes the distinct boxes a 1-D np.unique
    as_int = boxes.astype(np.uint64)
    packed_key = (as_int[:, 0] << 48) | (as_int[:, 1] << 32) | (as_int[:, 2] << 16) | as_int[:, 3]
    unique_keys, index = np.unique(packed_key, return_inverse=True)
    unique = np.stack([(unique_keys >> shift) & 0xFFFF for shift in (48, 32, 16, 0)], axis=1)  # (U, 4)
    bits = max(1, int(unique.max()).bit_length())
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    bit_matrix = ((unique.reshape(-1, 1) >> shifts) & 1).astype(np.uint8)  # (4 U, bits)
    return EncodedBoxes(len(unique), bits, np.packbits(bit_matrix.ravel()), index.astype(np.int64))


def decode_boxes(packed: np.ndarray, num_unique: int, bits: int, index: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_boxes`: int64 (N, 4)."""
    if num_unique == 0:
        return np.zeros((len(index), 4), dtype=np.int64)
    bit_matrix = np.unpackbits(np.asarray(packed))[: 4 * num_unique * bits].reshape(-1, bits)
    weights = np.left_shift(1, np.arange(bits - 1, -1, -1, dtype=np.int64))
    unique = (bit_matrix @ weights).reshape(num_unique, 4)
    return unique[np.asarray(index, dtype=np.intp)]
