"""Check converted weights against a fine-tuning model, the way ``DetectionCheckpointer`` loads them.

Detectron2 places each checkpoint name on the model key it is a dotted suffix of
(``align_and_update_state_dicts``): ``res5.*`` lands in ``roi_heads.res5`` of a C4 model and in
``backbone.bottom_up.res5`` of an FPN model. This module runs that same matching and reports which
model tensors of the transferred parts stay at their initialisation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from .io import as_tensor

# Model keys each transferred part must fill. ``res5.norm`` (the extra norm of the C4 head) is new.
PART_MODEL_KEYS = {
    "backbone": re.compile(r"(?:^|\.)(?:stem|res[2-5]\.\d+)\."),
    "fpn": re.compile(r"(?:^|\.)fpn_(?:lateral|output)[2-5]\."),
    "box_head": re.compile(r"(?:^|\.)box_head\."),
}


@dataclass
class TransferCheck:
    """Outcome of matching converted weights onto a model's state dict."""

    loaded: dict[str, str] = field(default_factory=dict)  # model key -> checkpoint name
    missing: list[str] = field(default_factory=list)  # model keys of transferred parts left unfilled
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, ckpt, model shape)
    unused: list[str] = field(default_factory=list)  # checkpoint names no model key takes

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        lines = [
            f"  {len(self.loaded)} tensors load into the model; {len(self.unused)} unused"
            + (f" (e.g. {self.unused[0]})" if self.unused else "")
        ]
        lines += [f"  MISSING {key}" for key in self.missing]
        lines += [f"  SHAPE MISMATCH {name}: checkpoint {c}, model {m}" for name, c, m in self.mismatched]
        return "\n".join(lines)


def _parts_named(names: Sequence[str]) -> list[str]:
    """The parts of ``PART_MODEL_KEYS`` with at least one of ``names``, in that order."""
    return [part for part, key in PART_MODEL_KEYS.items() if any(key.search(n) for n in names)]


def transferred_parts(names: Iterable[str], source: str) -> list[str]:
    """The parts of ``PART_MODEL_KEYS`` that checkpoint names (converted suffixes or full model keys)
    hold, in that order.

    Raises ``ValueError`` naming ``source`` when no name is a backbone tensor (``stem.*``, ``res2..5.*``):
    every pretraining transfers its backbone, so such a file is a wrong one (counting the backbone as held
    would leave a frozen backbone at a random initialisation that nobody calibrates).
    """
    names = list(names)
    parts = _parts_named(names)
    if "backbone" not in parts:
        raise ValueError(
            f"{source}: none of its {len(names)} tensor names is a backbone one (stem.*, res2..5.*; "
            f"e.g. {names[:3]}): a pretraining's weights always hold the backbone; is it the right file?"
        )
    return parts


def check_transfer(
    model_state: Mapping[str, torch.Tensor], weights: Mapping[str, np.ndarray]
) -> TransferCheck:
    """Match ``weights`` (Detectron2 suffix names) onto ``model_state`` with Detectron2's heuristics."""
    tensors = {name: as_tensor(value) for name, value in weights.items()}
    source_of = {id(value): name for name, value in tensors.items()}
    aligned = align_and_update_state_dicts(dict(model_state), dict(tensors), c2_conversion=False)
    check = TransferCheck()
    for key, value in aligned.items():
        if key in model_state:
            check.loaded[key] = source_of[id(value)]
    check.unused = sorted(set(tensors) - set(check.loaded.values()))
    # the backbone always: weights without one report every backbone key missing
    wanted = [PART_MODEL_KEYS[part] for part in dict.fromkeys(["backbone", *_parts_named(list(weights))])]
    for key, model_value in model_state.items():
        if key in check.loaded or not any(p.search(key) for p in wanted):
            continue
        candidates = [name for name in tensors if key == name or key.endswith("." + name)]
        if candidates:
            name = max(candidates, key=len)
            check.mismatched.append((name, tuple(tensors[name].shape), tuple(model_value.shape)))
        else:
            check.missing.append(key)
    return check

