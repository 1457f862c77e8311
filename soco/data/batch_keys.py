"""Names of a pretraining batch's entries: the one place that writes and reads them (no torch here).

SoCo (written by ``soco.data.soco.views``, read by ``soco.modeling.soco``):

* ``view{v}``: view v (1-based), e.g. ``view1``;
* ``boxes{s}``, ``levels{s}``: box set s, named by the view it lives in and, for V1, the view it is paired
  with: ``"2"`` holds V2's boxes, ``"1_2"`` V1's boxes for the pair with V2 (``box_set(1, 2)``);
* ``correspondence{a}_vs_{b}``: the slot correspondence of the pair of box sets (a, b), e.g.
  ``correspondence1_2_vs_2``; the model's loss of that pair is ``loss_{a}_vs_{b}``.

SwAV multi-crop (``soco.data.image_views.MultiCropViews``, ``soco.modeling.swav``): ``crops_{g}`` holds
the crops of resolution group g (0: the largest crops).

MoCo v2 and DenseCL (``image_views.MoCoV2Views``, ``soco.modeling.moco``, ``soco.modeling.densecl``):
``views`` (:data:`TWO_VIEWS_KEY`) holds the query and key views of each image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: the entry of ``MoCoV2Views``: (2, 3, S, S) per sample, (B, 2, 3, S, S) batched; view 0 query, 1 key
TWO_VIEWS_KEY = "views"

_BOX_SET = r"[1-9]\d*(?:_[1-9]\d*)?"
_BOX_SET_RE = re.compile(rf"{_BOX_SET}$")
_VIEW_RE = re.compile(r"view([1-9]\d*)$")
_CORRESPONDENCE_RE = re.compile(rf"correspondence({_BOX_SET})_vs_({_BOX_SET})$")


def box_set(view: int, partner: int | None = None) -> str:
    """Name of view ``view``'s box set, or of its box set for the pair with view ``partner``."""
    return str(view) if partner is None else f"{view}_{partner}"


def view_of(name: str) -> int:
    """The view a box set lives in: ``"1_2"`` -> 1, ``"3"`` -> 3."""
    if not _BOX_SET_RE.match(name):
        raise ValueError(f"{name!r} is not a box set name ('v' or 'v_w' with view numbers from 1)")
    return int(name.split("_")[0])


def view_key(view: int) -> str:
    return f"view{view}"


def boxes_key(name: str) -> str:
    return f"boxes{name}"


def levels_key(name: str) -> str:
    return f"levels{name}"


def correspondence_key(a: str, b: str) -> str:
    return f"correspondence{a}_vs_{b}"


def loss_key(a: str, b: str) -> str:
    """The model's output name of the loss of pair (a, b)."""
    return f"loss_{a}_vs_{b}"


def pairs(keys: Iterable[str]) -> list[tuple[str, str]]:
    """The box-set pairs (a, b) of a batch, from its ``correspondence{a}_vs_{b}`` keys, sorted."""
    return sorted((m[1], m[2]) for key in keys if (m := _CORRESPONDENCE_RE.match(key)))


def box_sets(pair_names: Iterable[tuple[str, str]]) -> list[str]:
    """The distinct box sets of some pairs, sorted (a set shared by two pairs is listed once)."""
    return sorted({name for pair in pair_names for name in pair})


def views(keys: Iterable[str]) -> list[int]:
    """The view numbers of a batch's ``view{v}`` keys, sorted."""
    return sorted(int(m[1]) for key in keys if (m := _VIEW_RE.match(key)))


def multi_crop_key(group: int) -> str:
    """Name of the batch entry holding the crops of resolution group ``group`` (0: the largest crops)."""
    return f"crops_{group}"


def multi_crop_groups(keys: Iterable[str]) -> int:
    """How many crop groups a batch holds: G when ``crops_0`` .. ``crops_{G-1}`` are all present."""
    present = set(keys)
    count = 0
    while multi_crop_key(count) in present:
        count += 1
    return count
