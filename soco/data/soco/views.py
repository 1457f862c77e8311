"""SoCo's view generators: image + proposals -> views, boxes, FPN levels and correspondence matrices.

Registered in ``VIEW_GENERATOR_REGISTRY`` and chosen by ``PRETRAIN.DATA.VIEW_GENERATOR``:

=====================  =====================================================================================
``SoCoC4Views``        V1 whole image, V2 random-resized crop; one level (res4), K x K correspondence
``SoCoFPNViews``       V1 whole image, V2 and V3 independent random-resized crops (the original code; the
                       paper's figure derives V3 from V2), levels P2..P5 by box size in each view
``SoCoFPNStarViews``   as ``SoCoFPNViews`` plus V4 = V2 resized (SoCo*; V3 is usually 192 px)
=====================  =====================================================================================

Output of a call (fixed shapes, batched by ``default_collate``), named by ``soco.data.batch_keys``: box
*sets* are named by the view they live in and, for V1, the view they are paired with (``"1_2"``: V1's
boxes for the pair with V2):

* ``view{v}``: (3, S_v, S_v) float32, normalised RGB;
* ``boxes{set}``: (K, 4) float32, continuous xyxy in the view's pixels after its flip (see ``boxes.py``);
* ``levels{set}``: (K,) int64, the pyramid level of each box (always 0 for C4);
* ``correspondence{a}_vs_{b}``: (P*K, P*K) float32 (P levels, slots level-major: ``level * K + box``),
  1 where slot i of set a and slot j of set b hold the same proposal; P = 1 for C4.

Pairs: C4 ``1_2_vs_2``; FPN ``1_2_vs_2``, ``1_3_vs_3``; FPN* also ``1_2_vs_4`` (V4 reuses V2's boxes
and V1's boxes of the pair with V2, as the original).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms as T
from detectron2.config import CfgNode
from PIL import Image

from ..batch_keys import box_set, boxes_key, correspondence_key, levels_key, view_key
from ..build import VIEW_GENERATOR_REGISTRY
from ..photometric import ColorRecipe, Normalizer
from . import boxes as B
from .cutout import cutout_in_boxes

#: sentinel ids of empty level slots, distinct per side of a pair so that they never match
_EMPTY_SLOT_A, _EMPTY_SLOT_B = -1, -2


def _crop_pair(view: int) -> tuple[str, str]:
    """The pair of V1's box set for view ``view`` and that view's own box set, e.g. ("1_2", "2")."""
    return box_set(1, view), box_set(view)


@dataclass
class _PlacedBoxes:
    """A box set in a view's pixels (before the view's flip) with its proposal ids."""

    view: int
    boxes: np.ndarray
    ids: np.ndarray


class SoCoViews:
    """Shared machinery of the SoCo view generators (not registered itself).

    Subclasses set ``NUM_VIEWS`` and ``MULTI_LEVEL`` and implement ``__call__`` with the helpers below.
    """

    NUM_VIEWS = 2
    MULTI_LEVEL = True
    REQUIRES_PROPOSALS = True  # checked by soco.data.build: SoCo without proposals is an error

    def __init__(self, cfg: CfgNode):
        views, boxes, cutout = cfg.SOCO.VIEWS, cfg.SOCO.BOXES, cfg.SOCO.CUTOUT
        self.sizes = [int(s) for s in views.SIZES]
        if len(self.sizes) != self.NUM_VIEWS:
            raise ValueError(
                f"SOCO.VIEWS.SIZES={list(views.SIZES)}: {type(self).__name__} needs "
                f"{self.NUM_VIEWS} view sizes"
            )
        self.crop_scale = tuple(views.CROP_SCALE)
        self.crop_ratio = tuple(views.CROP_RATIO)
        self.flip_prob = views.FLIP_PROB
        self.k = boxes.NUM_PER_PAIR
        self.max_tries = boxes.MAX_TRIES
        if self.k < 1 or self.max_tries < 1:
            raise ValueError("SOCO.BOXES.NUM_PER_PAIR and SOCO.BOXES.MAX_TRIES must be >= 1")
        self.jitter_prob, self.jitter_ratio = boxes.JITTER_PROB, boxes.JITTER_RATIO
        self.level_thresholds = [float(t) for t in boxes.LEVEL_THRESHOLDS] if self.MULTI_LEVEL else [np.inf]
        if max(self.sizes) > self.level_thresholds[-1]:
            raise ValueError(
                f"SOCO.VIEWS.SIZES={self.sizes}: a view is larger than the last level threshold "
                f"SOCO.BOXES.LEVEL_THRESHOLDS[-1]={self.level_thresholds[-1]}, "
                "so large boxes would have no level"
            )
        self.cutout_enabled, self.cutout_prob = cutout.ENABLED, cutout.PROB
        self.cutout_area = tuple(cutout.AREA)
        self.normalize = Normalizer(cfg.PRETRAIN.DATA.PIXEL_MEAN, cfg.PRETRAIN.DATA.PIXEL_STD)
        fast = cfg.PRETRAIN.DATA.FAST_PHOTOMETRIC
        self.color = [self._color_recipe(views, 0).build(fast), self._color_recipe(views, 1).build(fast)]

    @staticmethod
    def _color_recipe(views: CfgNode, which: int) -> ColorRecipe:
        """Colour pipeline of V1 (``which`` 0) or of the other views (1)."""
        return ColorRecipe(
            jitter=tuple(views.COLOR_JITTER),
            jitter_prob=views.COLOR_JITTER_PROB,
            grayscale_prob=views.GRAYSCALE_PROB,
            blur_prob=views.BLUR_PROB[which],
            blur_sigma=tuple(views.BLUR_SIGMA),
            solarize_prob=views.SOLARIZE_PROB[which],
            solarize_threshold=views.SOLARIZE_THRESHOLD,
        )

    # --- geometry -------------------------------------------------------------------------------------

    def _random_crop(self, image: Image.Image) -> B.CropWindow:
        top, left, height, width = T.RandomResizedCrop.get_params(image, self.crop_scale, self.crop_ratio)
        return B.CropWindow(left, top, width, height)

    def _draw_crops_and_select(
        self, image: Image.Image, proposals: B.BoxSet, num_crops: int
    ) -> tuple[list[B.CropWindow], list[B.BoxSet]]:
        """Random crops for V2.. and, per crop, up to K proposals overlapping it (V1 is the whole image)."""
        whole = B.whole_image_window(*image.size)
        crops, selections = B.select_with_retries(
            proposals.boxes,
            whole,
            lambda: [self._random_crop(image) for _ in range(num_crops)],
            self.k,
            self.max_tries,
        )
        return crops, [B.BoxSet(proposals.boxes[s], proposals.ids[s]) for s in selections]

    def _place_pair(
        self, whole: B.CropWindow, crop: B.CropWindow, crop_view: int, selected: B.BoxSet
    ) -> tuple[_PlacedBoxes, _PlacedBoxes]:
        """V1's (jittered) and the crop view's boxes of one pair: clipped, padded to K, in view pixels."""
        anchor = B.BoxSet(B.jitter_boxes(selected.boxes, self.jitter_prob, self.jitter_ratio), selected.ids)
        anchor, other = B.pad_with_common(
            B.clip_to_window(anchor, whole), B.clip_to_window(selected, crop), self.k
        )
        crop_size = self.sizes[crop_view - 1]
        return (
            _PlacedBoxes(1, B.window_to_view(anchor.boxes, whole, self.sizes[0]), anchor.ids),
            _PlacedBoxes(crop_view, B.window_to_view(other.boxes, crop, crop_size), other.ids),
        )

    def _finish(
        self, sets: dict[str, _PlacedBoxes], pairs: list[tuple[str, str]], flips: dict[int, bool]
    ) -> dict[str, torch.Tensor]:
        """Flip the box sets with their views, assign levels, build the correspondence of every pair."""
        out: dict[str, torch.Tensor] = {}
        slots: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, placed in sets.items():
            size = self.sizes[placed.view - 1]
            boxes = B.flip_boxes(placed.boxes, size) if flips[placed.view] else placed.boxes
            levels = B.assign_levels(boxes, self.level_thresholds)
            out[boxes_key(name)] = torch.from_numpy(boxes.astype(np.float32))
            out[levels_key(name)] = torch.from_numpy(levels)
            slots[name] = (placed.ids, levels)
        num_levels = len(self.level_thresholds)
        for a, b in pairs:
            slots_a = B.level_slot_ids(*slots[a], num_levels, _EMPTY_SLOT_A)
            slots_b = B.level_slot_ids(*slots[b], num_levels, _EMPTY_SLOT_B)
            out[correspondence_key(a, b)] = torch.from_numpy(B.correspondence_matrix(slots_a, slots_b))
        return out

    # --- pixels ---------------------------------------------------------------------------------------

    def _crop_image(self, image: Image.Image, window: B.CropWindow, size: int) -> Image.Image:
        """The window resized to ``size`` x ``size`` (bilinear, antialiased): torchvision's ``resized_crop``
        on PIL, without its copy of the whole image for V1's window.
        """
        left, top = int(window.left), int(window.top)
        right, bottom = left + int(window.width), top + int(window.height)
        if (left, top, right, bottom) != (0, 0, *image.size):
            image = image.crop((left, top, right, bottom))
        return image.resize((size, size), Image.BILINEAR)

    def _render(self, out: dict[str, torch.Tensor], view_image: Image.Image, view: int, flip: bool) -> None:
        """``out[view{v}]``: flip, colour (V1's recipe for view 1), normalise; views after V1 then get the
        cutout inside their own box set (``out`` holds it already) when enabled.
        """
        if flip:
            view_image = view_image.transpose(Image.FLIP_LEFT_RIGHT)
        view_image = self.color[0 if view == 1 else 1](view_image)
        tensor = self.normalize(view_image)
        if view > 1 and self.cutout_enabled:
            boxes = out[boxes_key(box_set(view))].numpy()
            cutout_in_boxes(tensor, boxes, self.cutout_prob, self.cutout_area)
        out[view_key(view)] = tensor

    def _flips(self) -> dict[int, bool]:
        return {v: bool(np.random.uniform() < self.flip_prob) for v in range(1, self.NUM_VIEWS + 1)}


@VIEW_GENERATOR_REGISTRY.register()
class SoCoC4Views(SoCoViews):
    """SoCo C4: V1 (whole image) and V2 (random-resized crop), one level, cutout in V2's boxes if enabled."""

    NUM_VIEWS = 2
    MULTI_LEVEL = False

    def __call__(self, image: Image.Image, proposals: np.ndarray | None) -> dict[str, torch.Tensor]:
        whole = B.whole_image_window(*image.size)
        proposal_boxes = B.proposals_to_boxes(proposals, *image.size)
        (crop,), (selected,) = self._draw_crops_and_select(image, proposal_boxes, 1)
        anchor, other = self._place_pair(whole, crop, 2, selected)
        flips = self._flips()
        out = self._finish(dict(zip(_crop_pair(2), (anchor, other), strict=True)), [_crop_pair(2)], flips)
        self._render(out, self._crop_image(image, whole, self.sizes[0]), 1, flips[1])
        self._render(out, self._crop_image(image, crop, self.sizes[1]), 2, flips[2])
        return out


@VIEW_GENERATOR_REGISTRY.register()
class SoCoFPNViews(SoCoViews):
    """SoCo FPN: V1 (whole image), V2 and V3 (independent random-resized crops), pairs (1, 2) and (1, 3)."""

    NUM_VIEWS = 3

    def _place_v2_v3(
        self, image: Image.Image, proposals: np.ndarray | None
    ) -> tuple[B.CropWindow, list[B.CropWindow], dict[str, _PlacedBoxes]]:
        """V1's window, the V2 and V3 crop windows, and the placed box sets of pairs (1, 2) and (1, 3)."""
        whole = B.whole_image_window(*image.size)
        crops, selected = self._draw_crops_and_select(image, B.proposals_to_boxes(proposals, *image.size), 2)
        sets: dict[str, _PlacedBoxes] = {}
        for view, crop, chosen in zip((2, 3), crops, selected, strict=True):
            anchor, other = self._place_pair(whole, crop, view, chosen)
            sets.update(zip(_crop_pair(view), (anchor, other), strict=True))
        return whole, crops, sets

    def _render_v1_v2_v3(
        self,
        image: Image.Image,
        whole: B.CropWindow,
        crops: list[B.CropWindow],
        flips: dict[int, bool],
        out: dict[str, torch.Tensor],
    ) -> dict[int, Image.Image]:
        """Render V1..V3 into ``out``; returns the V2 and V3 crops before flip and colour."""
        self._render(out, self._crop_image(image, whole, self.sizes[0]), 1, flips[1])
        crop_images = {}
        for view, crop in zip((2, 3), crops, strict=True):
            crop_images[view] = self._crop_image(image, crop, self.sizes[view - 1])
            self._render(out, crop_images[view], view, flips[view])
        return crop_images

    def __call__(self, image: Image.Image, proposals: np.ndarray | None) -> dict[str, torch.Tensor]:
        whole, crops, sets = self._place_v2_v3(image, proposals)
        flips = self._flips()
        out = self._finish(sets, [_crop_pair(2), _crop_pair(3)], flips)
        self._render_v1_v2_v3(image, whole, crops, flips, out)
        return out


@VIEW_GENERATOR_REGISTRY.register()
class SoCoFPNStarViews(SoCoFPNViews):
    """SoCo*: the FPN views plus V4 = V2 resized to ``SIZES[3]`` (flipped and coloured independently),
    paired with V1 through V2's boxes: pairs (1, 2), (1, 3) and (1, 4).
    """

    NUM_VIEWS = 4

    def __call__(self, image: Image.Image, proposals: np.ndarray | None) -> dict[str, torch.Tensor]:
        whole, crops, sets = self._place_v2_v3(image, proposals)
        downscale = self.sizes[3] / self.sizes[1]
        view2 = sets[box_set(2)]
        sets[box_set(4)] = _PlacedBoxes(4, view2.boxes * downscale, view2.ids)
        flips = self._flips()
        out = self._finish(sets, [_crop_pair(2), _crop_pair(3), (box_set(1, 2), box_set(4))], flips)
        crop_images = self._render_v1_v2_v3(image, whole, crops, flips, out)
        view4_image = crop_images[2].resize((self.sizes[3], self.sizes[3]), Image.BILINEAR)
        self._render(out, view4_image, 4, flips[4])
        return out
