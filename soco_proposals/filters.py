"""SoCo's proposal filters: minimum side, aspect ratio and relative size, named by a strategy string.

Strategy strings are parsed as the original ``filter_ss_proposals_json.py`` parses them:

* ``none``: keep boxes with w >= 32 and h >= 32;
* ``ratio<R>``: also 1/R <= w/h <= R, R being the *last* character (``ratio3``);
* ``size<XX>``: also XX/10 <= sqrt(w h) / sqrt(W H) <= 1, XX being the last two characters (``size03``);
* ``ratio<R>size<AA><BB>``: ratio R (the 6th character) and AA/10 <= sqrt(w h) / sqrt(W H) <= BB/10
  (``ratio3size0308``: ratio 3, size 0.3 to 0.8, the setting SoCo trains with).

Boxes are ``(x, y, w, h)`` with ``w = max_x - min_x`` (the original compares these w, h with 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SIDE = 32
# The no-proposal fallback of filter_ss_proposals_json_post_no_prop.py: ratio 3 without the size rule,
# then the bare minimum side.
POST_FALLBACK_STRATEGIES = ("ratio3", "none")


@dataclass(frozen=True)
class FilterStrategy:
    """A parsed strategy: thresholds that are ``None`` are not applied."""

    name: str
    max_aspect_ratio: float | None = None
    min_size_ratio: float | None = None
    max_size_ratio: float | None = None
    min_side: int = MIN_SIDE

    @property
    def uses_image_size(self) -> bool:
        return self.min_size_ratio is not None


def parse_strategy(name: str) -> FilterStrategy:
    """Parse ``none``, ``ratio<R>``, ``size<XX>`` or ``ratio<R>size<AA><BB>`` (see the module docstring)."""
    try:
        if name == "none":
            return FilterStrategy(name)
        if name.startswith("ratio") and "size" in name:
            ratio_text, size_text = name[len("ratio") :].split("size")
            if len(ratio_text) != 1 or len(size_text) != 4:
                raise ValueError("expected one ratio digit and four size digits")
            return FilterStrategy(
                name,
                max_aspect_ratio=float(ratio_text),
                min_size_ratio=float(size_text[:2]) / 10,
                max_size_ratio=float(size_text[2:]) / 10,
            )
        if name.startswith("ratio"):
            if len(name) != len("ratio") + 1:
                raise ValueError("expected one ratio digit")
            return FilterStrategy(name, max_aspect_ratio=float(name[-1]))
        if name.startswith("size"):
            if len(name) != len("size") + 2:
                raise ValueError("expected two size digits")
            return FilterStrategy(name, min_size_ratio=float(name[-2:]) / 10, max_size_ratio=1.0)
    except ValueError as error:
        raise ValueError(
            f"invalid filter strategy {name!r} ({error}); expected 'none', 'ratio<R>', 'size<XX>' "
            "or 'ratio<R>size<AA><BB>', e.g. 'ratio3size0308'"
        ) from None
    raise ValueError(
        f"unknown filter strategy {name!r}; expected 'none', 'ratio<R>', 'size<XX>' or "
        "'ratio<R>size<AA><BB>', e.g. 'ratio3size0308'"
    )


def keep_mask(boxes: np.ndarray, image_size: tuple[int, int] | None, strategy: FilterStrategy) -> np.ndarray:
    """(N,) bool: which boxes (N, 4) xywh pass ``strategy`` on an image of size (H, W)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    w = boxes[:, 2].astype(np.float64)
    h = boxes[:, 3].astype(np.float64)
    keep = (w >= strategy.min_side) & (h >= strategy.min_side)
    if strategy.max_aspect_ratio is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = w / h
        keep &= (1.0 / strategy.max_aspect_ratio <= aspect) & (aspect <= strategy.max_aspect_ratio)
    if strategy.uses_image_size:
        if image_size is None:
            raise ValueError(f"filter strategy {strategy.name!r} needs the image size (H, W)")
        height, width = image_size
        relative = np.sqrt(w * h) / np.sqrt(float(width) * float(height))
        keep &= (strategy.min_size_ratio <= relative) & (relative <= strategy.max_size_ratio)
    return keep


def filter_boxes(
    boxes: np.ndarray, image_size: tuple[int, int] | None, strategy: FilterStrategy
) -> np.ndarray:
    """The boxes (N, 4) xywh that pass ``strategy``, in their original order: (K, 4)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return boxes[keep_mask(boxes, image_size, strategy)]


def post_fallback_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boxes for an image the main strategy left empty: ratio 3 only, else w, h >= 32, else none."""
    for name in POST_FALLBACK_STRATEGIES:
        kept = filter_boxes(boxes, None, parse_strategy(name))
        if len(kept):
            return kept
    return np.asarray(boxes).reshape(-1, 4)[:0]
