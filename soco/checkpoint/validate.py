"""Structural checks of converted Detectron2 weights before they are written.

The checks catch a checkpoint that would load only partly: a missing stage, block, BatchNorm
statistic or FPN level, and convolutions whose channel counts do not chain (e.g. tensors mixed from
two networks). Every problem is a :class:`CheckpointLayoutError` naming the tensor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .rename import UnknownTensorName, parse_detectron2

BN_REQUIRED = ("weight", "bias", "running_mean", "running_var")
# (blocks in res2..res5, block type) -> ResNet depth, as Detectron2's build_resnet_backbone defines them.
RESNET_DEPTHS = {
    ((2, 2, 2, 2), "basic"): 18,
    ((3, 4, 6, 3), "basic"): 34,
    ((3, 4, 6, 3), "bottleneck"): 50,
    ((3, 4, 23, 3), "bottleneck"): 101,
    ((3, 8, 36, 3), "bottleneck"): 152,
}


class CheckpointLayoutError(ValueError):
    """Converted weights are incomplete or inconsistent; the message names the tensor."""


@dataclass(frozen=True)
class TransferArchitecture:
    """What the converted weights describe."""

    depth: int
    block: str  # "bottleneck" or "basic", in res2..res4
    res5_block: str  # differs from ``block`` for the bottleneck res5 of a C4 head on R18 / R34
    stage_channels: tuple[int, int, int, int]  # output channels of res2..res5
    fpn_channels: int | None
    box_head: str | None  # e.g. "4conv1fc"

    def describe(self) -> str:
        text = f"ResNet-{self.depth} ({self.block} blocks, res5 out {self.stage_channels[-1]} ch)"
        if self.res5_block != self.block:
            text += f" with a {self.res5_block} res5 (Detectron2's C4 RoI head; fits C4 models only)"
        if self.fpn_channels is not None:
            text += f" + FPN P2-P5 ({self.fpn_channels} ch)"
        if self.box_head is not None:
            text += f" + box head {self.box_head}"
        return text


class _Checker:
    def __init__(self, weights: Mapping[str, np.ndarray]):
        self.weights = weights
        self.visited: set[str] = set()

    def tensor(self, name: str, ndim: int | None = None) -> np.ndarray:
        if name not in self.weights:
            raise CheckpointLayoutError(f"missing expected tensor {name!r}")
        value = self.weights[name]
        if ndim is not None and value.ndim != ndim:
            raise CheckpointLayoutError(
                f"{name!r} has shape {tuple(value.shape)}, expected a {ndim}-D tensor"
            )
        self.visited.add(name)
        return value

    def vector(self, name: str, length: int) -> None:
        value = self.tensor(name, ndim=1)
        if value.shape[0] != length:
            raise CheckpointLayoutError(
                f"shape mismatch: {name!r} has {value.shape[0]} entries, expected {length}"
            )

    def conv(self, name: str, in_channels: int | None, require_norm: bool) -> int:
        """Check ``name.weight`` (+ BatchNorm ``name.norm.*`` or ``name.bias``); return output channels."""
        weight = self.tensor(f"{name}.weight", ndim=4)
        out_channels, got_in = weight.shape[0], weight.shape[1]
        if in_channels is not None and got_in != in_channels:
            raise CheckpointLayoutError(
                f"shape mismatch: {name + '.weight'!r} takes {got_in} input channels, "
                f"but the preceding layer gives {in_channels}"
            )
        has_norm = any(k.startswith(f"{name}.norm.") for k in self.weights)
        if has_norm or require_norm:
            for param in BN_REQUIRED:
                self.vector(f"{name}.norm.{param}", out_channels)
            tracked = f"{name}.norm.num_batches_tracked"
            if tracked in self.weights:
                self.visited.add(tracked)
        elif f"{name}.bias" in self.weights:
            self.vector(f"{name}.bias", out_channels)
        return out_channels

    def linear(self, name: str, in_features: int) -> int:
        weight = self.tensor(f"{name}.weight", ndim=2)
        if weight.shape[1] != in_features:
            raise CheckpointLayoutError(
                f"shape mismatch: {name + '.weight'!r} takes {weight.shape[1]} features, "
                f"expected {in_features}"
            )
        self.vector(f"{name}.bias", weight.shape[0])
        return weight.shape[0]


def _resnet(check: _Checker) -> tuple[int, str, str, tuple[int, int, int, int]]:
    """Check stem and res2..res5; return (depth, block type of res2-4, block type of res5, stage widths)."""
    blocks: dict[int, set[int]] = {stage: set() for stage in range(2, 6)}
    layers: dict[tuple[int, int], set[str]] = {}
    for name in check.weights:
        if name.startswith(("stem.", "res")):
            try:
                t = parse_detectron2(name)
            except UnknownTensorName as e:
                raise CheckpointLayoutError(f"unexpected tensor: {e}") from None
            if t.block is not None:
                blocks[t.stage].add(t.block)
                layers.setdefault((t.stage, t.block), set()).add(t.layer)
    channels = check.conv("stem.conv1", None, require_norm=True)
    counts, kinds, stage_channels = [], [], []
    for stage in range(2, 6):
        ids = sorted(blocks[stage])
        if not ids:
            raise CheckpointLayoutError(
                f"missing expected tensors 'res{stage}.*' (stages res2..res5 are all needed)"
            )
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        if missing:
            raise CheckpointLayoutError(f"missing expected tensors 'res{stage}.{missing[0]}.*'")
        for block in ids:
            kind = "bottleneck" if "conv3" in layers[(stage, block)] else "basic"
            if block == 0:
                kinds.append(kind)
            elif kind != kinds[-1]:
                raise CheckpointLayoutError(f"'res{stage}.{block}.*' is a {kind} block, res{stage}.0 is not")
            block_in = channels
            for conv in ("conv1", "conv2", "conv3")[: 3 if kind == "bottleneck" else 2]:
                channels = check.conv(f"res{stage}.{block}.{conv}", channels, require_norm=True)
            shortcut = f"res{stage}.{block}.shortcut"
            if block_in != channels:
                out = check.conv(shortcut, block_in, require_norm=True)
                if out != channels:
                    raise CheckpointLayoutError(
                        f"shape mismatch: {shortcut + '.weight'!r} gives {out} channels, "
                        f"the block gives {channels}"
                    )
            elif "shortcut" in layers[(stage, block)]:
                raise CheckpointLayoutError(
                    f"unexpected tensors '{shortcut}.*' in a block that keeps its width"
                )
        counts.append(len(ids))
        stage_channels.append(channels)
    if len(set(kinds[:3])) != 1:
        raise CheckpointLayoutError(f"res2..res4 mix block types {kinds[:3]}")
    kind, res5 = kinds[0], kinds[3]
    depth = RESNET_DEPTHS.get((tuple(counts), kind))
    # Detectron2's C4 RoI head builds res5 from 3 bottlenecks for every depth, so a C4 model of a
    # basic-block ResNet (R18/R34) carries a bottleneck res5.
    c4_res5_head = kind == "basic" and res5 == "bottleneck" and counts[3] == 3
    if c4_res5_head:
        depth = next(
            (d for (n, k), d in RESNET_DEPTHS.items() if k == kind and n[:3] == tuple(counts[:3])), None
        )
    if depth is None:
        raise CheckpointLayoutError(
            f"blocks per stage res2..res5 = {counts} ({kinds}) is not a Detectron2 ResNet depth "
            "(18/34/50/101/152)"
        )
    return depth, kind, res5, tuple(stage_channels)


def _fpn(check: _Checker, stage_channels: tuple[int, ...]) -> int | None:
    if not any(name.startswith("fpn_") for name in check.weights):
        return None
    width = None
    for level in range(2, 6):
        lateral = check.conv(f"fpn_lateral{level}", stage_channels[level - 2], require_norm=False)
        if width is not None and lateral != width:
            raise CheckpointLayoutError(
                f"shape mismatch: 'fpn_lateral{level}.weight' gives {lateral} channels, "
                f"the other levels {width}"
            )
        width = lateral
        check.conv(f"fpn_output{level}", width, require_norm=False)
    return width


def _indices(names: list[str], pattern: str) -> list[int]:
    return sorted({int(m[1]) for m in (re.match(pattern, n) for n in names) if m})


def _box_head(check: _Checker, in_channels: int | None) -> str | None:
    names = [n for n in check.weights if n.startswith("box_head.")]
    if not names:
        return None
    convs, fcs = _indices(names, r"box_head\.conv(\d+)\."), _indices(names, r"box_head\.fc(\d+)\.")
    for kind, ids in (("conv", convs), ("fc", fcs)):
        if ids and ids != list(range(1, len(ids) + 1)):
            first_gap = min(set(range(1, ids[-1] + 1)) - set(ids))
            raise CheckpointLayoutError(f"missing expected tensors 'box_head.{kind}{first_gap}.*'")
    channels = in_channels
    for k in convs:
        channels = check.conv(f"box_head.conv{k}", channels, require_norm=False)
    features = None
    for k in fcs:
        if k == 1:
            features = check.tensor("box_head.fc1.weight", ndim=2).shape[1]
            if channels is not None:
                side = math.isqrt(features // channels)
                if side * side * channels != features:
                    raise CheckpointLayoutError(
                        f"shape mismatch: 'box_head.fc1.weight' takes {features} features, not "
                        f"{channels} channels x a square RoI grid"
                    )
        features = check.linear(f"box_head.fc{k}", features)
    return f"{len(convs)}conv{len(fcs)}fc"


def validate_transfer_weights(weights: Mapping[str, np.ndarray]) -> TransferArchitecture:
    """Check converted weights (Detectron2 suffix names) for completeness and consistent shapes."""
    check = _Checker(weights)
    depth, block, res5_block, stage_channels = _resnet(check)
    fpn_channels = _fpn(check, stage_channels)
    box_head = _box_head(check, fpn_channels)
    stray = sorted(set(weights) - check.visited)
    if stray:
        raise CheckpointLayoutError(
            f"unexpected tensor {stray[0]!r} (and {len(stray) - 1} more) does not belong "
            "to a consistent ResNet / FPN / box head"
        )
    return TransferArchitecture(depth, block, res5_block, stage_channels, fpn_channels, box_head)
