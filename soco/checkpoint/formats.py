"""Registry of the checkpoint layouts soco can transfer from.

Each :class:`SourceFormat` knows how to recognise a loaded checkpoint (``detect``), where its flat
state dict lives (``unwrap``) and one ordered list of :data:`Rule` s. Every key of the state dict
must be covered by a rule: a :class:`Keep` renames the tensor into a Detectron2 suffix name of one
transferred *part* (``backbone``: ``stem.*``/``res2..5.*``; ``fpn``: ``fpn_lateral*``/``fpn_output*``;
``box_head``: ``box_head.*``), a :class:`Drop` discards it with a reason. A key no rule covers is an
error, so a new layout is never half-converted in silence.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .rename import (
    detectron2_box_head_name,
    detectron2_fpn_name,
    detectron2_resnet_name,
    mmdet_fpn_to_detectron2,
    soco_head_to_detectron2,
    torchvision_to_detectron2,
)

PARTS = ("backbone", "fpn", "box_head")
OPENMMLAB_AUTHORS = ("DenseCL", "OpenSelfSup", "MMSelfSup")
# Queues of our checkpoints: FeatureQueue modules (``queue.features``, ``queue.ptr``, ...) or plain
# buffers (``queue``, ``queue_ptr``), also for DenseCL's ``dense_queue``.
QUEUE_PATTERN = r"(?:dense_)?queue(?:$|_ptr$|\.)"
TARGET_PATTERN = r"target\."


@dataclass(frozen=True)
class Keep:
    """Keep keys matching ``pattern`` (a regex anchored at the key start); ``rename`` maps the rest."""

    pattern: str
    part: str
    rename: Callable[[str], str]
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


@dataclass(frozen=True)
class Drop:
    """Drop keys matching ``pattern`` (a regex anchored at the key start) for ``reason``."""

    pattern: str
    reason: str
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


Rule = Keep | Drop


class SourceFormat(ABC):
    """One checkpoint layout. Subclasses set ``name``/``description`` and implement the three hooks."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def detect(self, checkpoint: Any) -> bool:
        """Whether ``checkpoint`` (the loaded file) has this layout."""

    @abstractmethod
    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        """The flat ``{key: tensor}`` mapping inside the checkpoint."""

    @abstractmethod
    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        """Rules for the keys of ``state``, tried in order; the first match wins."""


SOURCE_FORMATS: dict[str, SourceFormat] = {}


def register_format(cls: type[SourceFormat]) -> type[SourceFormat]:
    """Class decorator adding one instance of ``cls`` to :data:`SOURCE_FORMATS` under ``cls.name``."""
    if cls.name in SOURCE_FORMATS:
        raise ValueError(f"checkpoint format {cls.name!r} is registered twice")
    SOURCE_FORMATS[cls.name] = cls()
    return cls


def _mapping_at(checkpoint: Any, key: str) -> Mapping[str, Any] | None:
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
        return checkpoint[key]
    return None


def _describe(checkpoint: Any) -> str:
    """A short description of a checkpoint's top level, for error messages."""
    if not isinstance(checkpoint, Mapping):
        return f"an object of type {type(checkpoint).__name__}"
    top = sorted(map(str, checkpoint))[:8]
    inner = next(
        (checkpoint[k] for k in ("model", "state_dict") if isinstance(checkpoint.get(k), Mapping)), None
    )
    sample = sorted(map(str, inner if inner is not None else checkpoint))[:5]
    return f"top-level keys {top}, first tensor keys {sample}"


def get_format(name: str) -> SourceFormat:
    """The registered format called ``name``."""
    if name not in SOURCE_FORMATS:
        raise KeyError(f"unknown checkpoint format {name!r}; known: {sorted(SOURCE_FORMATS)}")
    return SOURCE_FORMATS[name]


def detect_format(checkpoint: Any, source: str = "checkpoint") -> SourceFormat:
    """The single registered format whose ``detect`` accepts ``checkpoint``."""
    matches = [fmt for fmt in SOURCE_FORMATS.values() if fmt.detect(checkpoint)]
    if not matches:
        raise ValueError(
            f"{source}: unknown checkpoint layout ({_describe(checkpoint)}); "
            f"known formats: {sorted(SOURCE_FORMATS)}"
        )
    if len(matches) > 1:
        names = [fmt.name for fmt in matches]
        raise ValueError(f"{source}: the layout fits several formats {names}; pass --format explicitly")
    return matches[0]


_TORCHVISION_KEYS = ("conv1.weight", "layer1.0.conv1.weight")


def _has_all(state: Mapping[str, Any] | None, keys: Sequence[str]) -> bool:
    return state is not None and all(k in state for k in keys)


@register_format
class SocoFormat(SourceFormat):
    """Checkpoints written by soco's pretraining (``tools/pretrain_net.py``), any method."""

    name = "soco"
    description = "soco pretraining checkpoint: {'model': backbone.*, roi_heads.*, heads, target.*}"

    def detect(self, checkpoint: Any) -> bool:
        state = _mapping_at(checkpoint, "model")
        return state is not None and any(
            k in state for k in ("backbone.bottom_up.stem.conv1.weight", "backbone.stem.conv1.weight")
        )

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return checkpoint["model"]

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        return (
            Drop(TARGET_PATTERN, "momentum target network (only the online network is transferred)"),
            Keep(r"backbone\.bottom_up\.", "backbone", detectron2_resnet_name),
            Keep(r"backbone\.(?=fpn_)", "fpn", detectron2_fpn_name),
            Keep(r"backbone\.", "backbone", detectron2_resnet_name),
            Keep(r"roi_heads\.(?=box_head\.)", "box_head", detectron2_box_head_name),
            Keep(r"roi_heads\.(?=res5\.)", "backbone", detectron2_resnet_name),
            Drop(r"(?:projector|predictor|prototypes|dense_projector)\.", "pretraining head"),
            Drop(QUEUE_PATTERN, "negative-key queue"),
        )


@register_format
class SocoOfficialFormat(SourceFormat):
    """``ckpt_epoch_N.pth`` / ``current.pth`` of the original SoCo code (hologerry/SoCo)."""

    name = "soco-official"
    description = "original SoCo ckpt_epoch_N.pth: {'model': module.encoder.*, module.neck.*, module.head.*}"

    def detect(self, checkpoint: Any) -> bool:
        return _has_all(_mapping_at(checkpoint, "model"), ["module.encoder.conv1.weight"])

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return checkpoint["model"]

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        return (
            Drop(r"module\.encoder\.fc\.", "ResNet classifier (not a detection weight)"),
            Keep(r"module\.encoder\.", "backbone", torchvision_to_detectron2),
            Keep(r"module\.neck\.", "fpn", mmdet_fpn_to_detectron2),
            Keep(r"module\.head\.", "box_head", soco_head_to_detectron2),
            Drop(r"module\.(?:encoder_k|neck_k|head_k|projector_k)\.", "momentum target network"),
            Drop(r"module\.(?:projector|predictor)\.", "BYOL projector / predictor (pretraining only)"),
            Drop(r"module\.queue(?:_ptr)?$", "unused queue left over from MoCo"),
        )


@register_format
class MocoFormat(SourceFormat):
    """``checkpoint_*.pth.tar`` / ``moco_v2_*_pretrain.pth.tar`` of facebookresearch/moco."""

    name = "moco"
    description = "MoCo release: {'state_dict': module.encoder_q.*, module.encoder_k.*, module.queue}"

    def detect(self, checkpoint: Any) -> bool:
        return _has_all(_mapping_at(checkpoint, "state_dict"), ["module.encoder_q.conv1.weight"])

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return checkpoint["state_dict"]

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        return (
            Drop(r"module\.encoder_q\.fc\.", "MoCo projection MLP (encoder_q.fc)"),
            Keep(r"module\.encoder_q\.", "backbone", torchvision_to_detectron2),
            Drop(r"module\.encoder_k\.", "momentum key encoder"),
            Drop(r"module\.queue(?:_ptr)?$", "negative-key queue"),
        )


@register_format
class SwavFormat(SourceFormat):
    """``swav_*_pretrain.pth.tar`` (bare ``module.*`` dict) or a SwAV training ``checkpoint.pth.tar``."""

    name = "swav"
    description = (
        "SwAV release: bare {module.conv1.*, module.layer*, module.projection_head.*, module.prototypes.*}"
    )

    def _state(self, checkpoint: Any) -> Mapping[str, Any] | None:
        wrapped = _mapping_at(checkpoint, "state_dict")
        if wrapped is not None:
            return wrapped
        return checkpoint if isinstance(checkpoint, Mapping) else None

    def detect(self, checkpoint: Any) -> bool:
        return _has_all(self._state(checkpoint), ["module.conv1.weight", "module.layer1.0.conv1.weight"])

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return self._state(checkpoint)

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        return (
            Drop(r"module\.projection_head\.", "SwAV projection head"),
            Drop(r"module\.prototypes\.", "SwAV prototypes"),
            Drop(r"module\.fc\.", "ResNet classifier (not a detection weight)"),
            Keep(r"module\.", "backbone", torchvision_to_detectron2),
        )


@register_format
class DenseclFormat(SourceFormat):
    """DenseCL / OpenSelfSup: the extracted release ``{'state_dict', 'author'}`` or a raw ``epoch_N.pth``."""

    name = "densecl"
    description = (
        "DenseCL release {'state_dict': torchvision names, 'author'} or OpenSelfSup epoch_N.pth "
        "{'meta', 'state_dict': backbone.*, encoder_q.*, encoder_k.*, neck.*, queue*, 'optimizer'}"
    )

    def detect(self, checkpoint: Any) -> bool:
        state = _mapping_at(checkpoint, "state_dict")
        if state is None:
            return False
        if "backbone.conv1.weight" in state:
            return True
        return checkpoint.get("author") in OPENMMLAB_AUTHORS and _has_all(state, _TORCHVISION_KEYS)

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return checkpoint["state_dict"]

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        if "backbone.conv1.weight" not in state:  # extracted backbone, torchvision names
            return (
                Drop(r"fc\.", "ResNet classifier (not a detection weight)"),
                Keep(r"", "backbone", torchvision_to_detectron2),
            )
        return (
            Keep(r"backbone\.", "backbone", torchvision_to_detectron2),
            Drop(r"encoder_q\.0\.", "alias of backbone.* (encoder_q[0] is the backbone)"),
            Drop(r"encoder_q\.1\.|neck\.", "query neck (global and dense projection MLPs)"),
            Drop(r"encoder_k\.", "momentum key encoder and neck"),
            Drop(r"head\.", "contrastive head"),
            Drop(r"queue2?(?:_ptr)?$", "negative-key queue"),
        )


@register_format
class TorchvisionFormat(SourceFormat):
    """A torchvision ResNet state dict, bare or as ``{'state_dict': ...}`` (mmdet, convert_to_torchvision)."""

    name = "torchvision"
    description = "torchvision ResNet: bare {conv1.weight, bn1.*, layer1..4.*, fc.*} or {'state_dict': ...}"

    def _state(self, checkpoint: Any) -> Mapping[str, Any] | None:
        wrapped = _mapping_at(checkpoint, "state_dict")
        if wrapped is not None:
            return None if checkpoint.get("author") in OPENMMLAB_AUTHORS else wrapped
        return checkpoint if isinstance(checkpoint, Mapping) else None

    def detect(self, checkpoint: Any) -> bool:
        return _has_all(self._state(checkpoint), _TORCHVISION_KEYS)

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return self._state(checkpoint)

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        return (
            Drop(r"fc\.", "ImageNet classifier (not a detection weight)"),
            Keep(r"", "backbone", torchvision_to_detectron2),
        )


@register_format
class Detectron2Format(SourceFormat):
    """An already converted Detectron2 file, e.g. SoCo's released ``current_detectron2_Head.pkl``."""

    name = "detectron2"
    description = "converted Detectron2 weights: {'model': stem.*, res2..5.*, fpn_*, box_head.*}"

    def detect(self, checkpoint: Any) -> bool:
        return _has_all(_mapping_at(checkpoint, "model"), ["stem.conv1.weight"])

    def unwrap(self, checkpoint: Any) -> Mapping[str, Any]:
        return checkpoint["model"]

    def rules(self, state: Mapping[str, Any]) -> Sequence[Rule]:
        return (
            Drop(r"stem\.fc\.", "projection MLP renamed by MoCo's converter (never matched by a model)"),
            Keep(r"(?=stem\.|res[2-5]\.)", "backbone", detectron2_resnet_name),
            Keep(r"(?=fpn_)", "fpn", detectron2_fpn_name),
            Keep(r"(?=box_head\.)", "box_head", detectron2_box_head_name),
        )
