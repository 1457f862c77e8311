"""Convert a pretraining checkpoint of any registered format into Detectron2 / torchvision weights.

``convert_checkpoint`` applies the format's rules to every key (keep + rename, or drop with a reason),
checks the result with :func:`validate_transfer_weights`, and returns numpy arrays under Detectron2
suffix names plus a :class:`ConversionReport`. The payload builders below turn those weights into the
files the CLIs in ``converters/`` write.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .formats import PARTS, Drop, SourceFormat, detect_format, get_format
from .io import as_numpy, as_tensor, load_checkpoint
from .rename import UnknownTensorName, detectron2_to_torchvision
from .validate import TransferArchitecture, validate_transfer_weights

KEEP_CHOICES = ("all", "backbone")
AUTHOR = "soco"


@dataclass
class ConversionReport:
    """What happened to every tensor of the source checkpoint."""

    source: str
    format_name: str
    detected: bool
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # (source key, new name, part)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (source key, reason)
    architecture: TransferArchitecture | None = None

    @property
    def renamed(self) -> list[tuple[str, str]]:
        """(source key, new name) of kept tensors whose name changed."""
        return [(src, dst) for src, dst, _ in self.kept if src != dst]

    def summary(self, verbose: bool = False) -> str:
        """Human-readable summary; ``verbose`` lists every tensor instead of examples."""
        how = "detected" if self.detected else "given"
        lines = [f"{self.source}: format '{self.format_name}' ({how})"]
        if self.architecture is not None:
            lines.append(f"  architecture: {self.architecture.describe()}")
        per_part = Counter(part for _, _, part in self.kept)
        parts = ", ".join(f"{part} {per_part[part]}" for part in PARTS if per_part[part])
        renamed = self.renamed
        lines.append(
            f"  kept {len(self.kept)} tensors ({parts}); {len(renamed)} renamed, "
            f"{len(self.kept) - len(renamed)} under their own name"
        )
        shown = renamed if verbose else renamed[:3]
        lines += [f"    {src} -> {dst}" for src, dst in shown]
        if len(shown) < len(renamed):
            lines.append(f"    ... {len(renamed) - len(shown)} more (--verbose lists all)")
        lines += format_drops(self.dropped, verbose)
        return "\n".join(lines)


def format_drops(dropped: list[tuple[str, str]], verbose: bool = False, noun: str = "tensors") -> list[str]:
    """Summary lines of dropped ``noun`` grouped by reason, with counts and example keys."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for key, reason in dropped:
        by_reason[reason].append(key)
    lines = [f"  dropped {len(dropped)} {noun}"]
    for reason, keys in by_reason.items():
        examples = keys if verbose else keys[:2]
        more = "" if len(examples) == len(keys) else ", ..."
        lines.append(f"    {len(keys):5d}  {reason}: {', '.join(examples)}{more}")
    return lines


def _to_numpy(key: str, value: Any) -> np.ndarray:
    """``value`` as a numpy array of its own: a copy, never a view of the checkpoint's tensor, which may be
    a live model's parameter that training goes on changing in place."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.array(as_numpy(value), copy=True)
    raise TypeError(f"{key!r} holds a {type(value).__name__}, expected a tensor or numpy array")


def _resolve_format(checkpoint: Any, format_name: str, source: str) -> tuple[SourceFormat, bool]:
    if format_name == "auto":
        return detect_format(checkpoint, source), True
    fmt = get_format(format_name)
    if not fmt.detect(checkpoint):
        raise ValueError(f"{source}: does not have the layout of format '{fmt.name}' ({fmt.description})")
    return fmt, False


def convert_checkpoint(
    checkpoint: Any, format_name: str = "auto", keep: str = "all", source: str = "checkpoint"
) -> tuple[dict[str, np.ndarray], ConversionReport]:
    """Convert a loaded checkpoint to ``{Detectron2 suffix name: numpy array}``.

    ``keep="backbone"`` keeps only ``stem.*``/``res2..5.*``; ``"all"`` also keeps the FPN and box head
    when the checkpoint has them. Unknown keys, missing tensors and inconsistent shapes raise. The arrays
    are copies: they share no memory with ``checkpoint`` (a live model's ``state_dict()`` included).
    """
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep must be one of {KEEP_CHOICES}, got {keep!r}")
    fmt, detected = _resolve_format(checkpoint, format_name, source)
    state = fmt.unwrap(checkpoint)
    rules = fmt.rules(state)
    report = ConversionReport(source, fmt.name, detected)
    weights: dict[str, np.ndarray] = {}
    for key, value in state.items():
        match = next(((rule, m) for rule in rules if (m := rule.regex.match(key))), None)
        if match is None:
            raise ValueError(
                f"{source}: key {key!r} is not part of the '{fmt.name}' layout ({fmt.description})"
            )
        rule, m = match
        if isinstance(rule, Drop):
            report.dropped.append((key, rule.reason))
            continue
        if keep == "backbone" and rule.part != "backbone":
            report.dropped.append((key, f"{rule.part} not requested (keep=backbone)"))
            continue
        try:
            name = rule.rename(key[m.end() :])
        except UnknownTensorName as e:
            raise ValueError(f"{source}: key {key!r}: {e}") from None
        if name in weights:
            raise ValueError(f"{source}: key {key!r} maps to {name!r}, which another key already produced")
        weights[name] = _to_numpy(key, value)
        report.kept.append((key, name, rule.part))
    report.architecture = validate_transfer_weights(weights)
    return weights, report


def convert_file(
    path: str, format_name: str = "auto", keep: str = "all", trust_pickle: bool = False
) -> tuple[dict[str, np.ndarray], ConversionReport]:
    """Load ``path`` and :func:`convert_checkpoint` it."""
    return convert_checkpoint(load_checkpoint(path, trust_pickle), format_name, keep, source=path)


def detectron2_payload(weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ``.pkl`` content Detectron2's ``DetectionCheckpointer`` loads with name-matching heuristics."""
    return {"model": dict(weights), "__author__": AUTHOR, "matching_heuristics": True}


def _backbone_tensors(weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: as_tensor(value) for name, value in weights.items() if name.startswith(("stem.", "res"))}


def torchvision_payload(weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``{"state_dict": torchvision ResNet names}``, the backbone format of torchvision and mmdet."""
    state = {detectron2_to_torchvision(name): value for name, value in _backbone_tensors(weights).items()}
    return {"state_dict": state, "author": AUTHOR}


def backbone_payload(weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Backbone tensors under Detectron2 ``ResNet`` module names (``stem.*``, ``res2..5.*``).

    ``build_resnet_backbone(cfg).load_state_dict(payload["model"])`` loads it directly; the
    ``matching_heuristics`` flag lets ``DetectionCheckpointer`` load it into a detector as well.
    """
    return {"model": _backbone_tensors(weights), "__author__": AUTHOR, "matching_heuristics": True}
