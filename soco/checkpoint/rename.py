"""Name rules between torchvision / OpenMMLab ResNets and Detectron2 modules.

A ResNet tensor name is parsed into a :class:`ResNetTensor` (stage, block, layer, norm, param) and
rendered in either vocabulary, so both directions share one grammar:

==================================  ======================================
torchvision / OpenMMLab             Detectron2 (``ResNet`` module names)
==================================  ======================================
``conv1.weight``                    ``stem.conv1.weight``
``bn1.<p>``                         ``stem.conv1.norm.<p>``
``layer{s}.{b}.conv{k}.weight``     ``res{s+1}.{b}.conv{k}.weight``
``layer{s}.{b}.bn{k}.<p>``          ``res{s+1}.{b}.conv{k}.norm.<p>``
``layer{s}.{b}.downsample.0.weight``  ``res{s+1}.{b}.shortcut.weight``
``layer{s}.{b}.downsample.1.<p>``   ``res{s+1}.{b}.shortcut.norm.<p>``
==================================  ======================================

with ``<p>`` one of the BatchNorm tensors. The FPN neck and the 4conv1fc box head of the original
SoCo release (mmdet ``ConvModule`` names) map onto Detectron2's ``fpn_lateral{l}`` /
``fpn_output{l}`` and ``box_head.conv{k}`` / ``box_head.fc{k}``, and back for the MMDetection export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_BN = "|".join(BN_TENSORS)


class UnknownTensorName(KeyError):
    """A tensor name that the grammar of the expected vocabulary does not describe."""

    def __init__(self, name: str, vocabulary: str):
        super().__init__(name)
        self.name = name
        self.vocabulary = vocabulary

    def __str__(self) -> str:
        return f"{self.name!r} is not a {self.vocabulary} tensor name"


@dataclass(frozen=True)
class ResNetTensor:
    """One tensor of a ResNet, independent of the naming vocabulary.

    ``stage`` uses Detectron2 numbering: 1 is the stem, 2..5 are res2..res5 (torchvision layer1..4).
    ``layer`` is ``conv1``/``conv2``/``conv3`` or ``shortcut``; ``norm`` says whether the tensor belongs
    to the BatchNorm that follows that convolution.
    """

    stage: int
    block: int | None
    layer: str
    norm: bool
    param: str


_TORCHVISION_STEM = re.compile(rf"^(?:conv1\.(?P<conv>weight)|bn1\.(?P<bn>{_BN}))$")
_TORCHVISION_BLOCK = re.compile(
    rf"^layer(?P<s>[1-4])\.(?P<b>\d+)\."
    rf"(?:conv(?P<k>[123])\.(?P<conv>weight)|bn(?P<kn>[123])\.(?P<bn>{_BN})"
    rf"|downsample\.0\.(?P<sc>weight)|downsample\.1\.(?P<scn>{_BN}))$"
)
_D2_STEM = re.compile(rf"^stem\.conv1\.(?:(?P<conv>weight)|norm\.(?P<bn>{_BN}))$")
_D2_BLOCK = re.compile(
    rf"^res(?P<s>[2-5])\.(?P<b>\d+)\.(?P<layer>conv[123]|shortcut)\.(?:(?P<conv>weight)|norm\.(?P<bn>{_BN}))$"
)


def parse_torchvision(name: str) -> ResNetTensor:
    """Parse a torchvision ResNet tensor name (``layer1.0.bn2.weight``); raises UnknownTensorName."""
    m = _TORCHVISION_STEM.match(name)
    if m:
        return ResNetTensor(1, None, "conv1", m["bn"] is not None, m["conv"] or m["bn"])
    m = _TORCHVISION_BLOCK.match(name)
    if m is None:
        raise UnknownTensorName(name, "torchvision ResNet")
    stage, block = int(m["s"]) + 1, int(m["b"])
    if m["conv"]:
        return ResNetTensor(stage, block, f"conv{m['k']}", False, m["conv"])
    if m["bn"]:
        return ResNetTensor(stage, block, f"conv{m['kn']}", True, m["bn"])
    if m["sc"]:
        return ResNetTensor(stage, block, "shortcut", False, m["sc"])
    return ResNetTensor(stage, block, "shortcut", True, m["scn"])


def parse_detectron2(name: str) -> ResNetTensor:
    """Parse a Detectron2 ResNet tensor name (``res2.0.conv2.norm.weight``); raises UnknownTensorName."""
    m = _D2_STEM.match(name)
    if m:
        return ResNetTensor(1, None, "conv1", m["bn"] is not None, m["conv"] or m["bn"])
    m = _D2_BLOCK.match(name)
    if m is None:
        raise UnknownTensorName(name, "Detectron2 ResNet")
    return ResNetTensor(int(m["s"]), int(m["b"]), m["layer"], m["bn"] is not None, m["conv"] or m["bn"])


def render_torchvision(t: ResNetTensor) -> str:
    """torchvision name of a parsed ResNet tensor."""
    if t.stage == 1:
        return f"bn1.{t.param}" if t.norm else f"conv1.{t.param}"
    prefix = f"layer{t.stage - 1}.{t.block}."
    if t.layer == "shortcut":
        return prefix + f"downsample.{1 if t.norm else 0}.{t.param}"
    k = t.layer[-1]
    return prefix + (f"bn{k}.{t.param}" if t.norm else f"conv{k}.{t.param}")


def render_detectron2(t: ResNetTensor) -> str:
    """Detectron2 name of a parsed ResNet tensor."""
    prefix = "stem." if t.stage == 1 else f"res{t.stage}.{t.block}."
    return prefix + t.layer + (".norm." if t.norm else ".") + t.param


def torchvision_to_detectron2(name: str) -> str:
    """``layer3.0.downsample.1.weight`` -> ``res4.0.shortcut.norm.weight``."""
    return render_detectron2(parse_torchvision(name))


def detectron2_to_torchvision(name: str) -> str:
    """``res4.0.shortcut.norm.weight`` -> ``layer3.0.downsample.1.weight``."""
    return render_torchvision(parse_detectron2(name))


def detectron2_resnet_name(name: str) -> str:
    """Validate a Detectron2 ResNet name and return it unchanged (our own checkpoints need no renaming)."""
    parse_detectron2(name)
    return name


_MMDET_FPN = re.compile(
    rf"^(?P<kind>lateral_convs|fpn_convs)\.(?P<i>[0-3])\.(?:conv\.(?P<conv>weight)|bn\.(?P<bn>{_BN}))$"
)
_D2_FPN = re.compile(
    rf"^fpn_(?P<kind>lateral|output)(?P<l>[2-5])\.(?:(?P<conv>weight|bias)|norm\.(?P<bn>{_BN}))$"
)
_SOCO_HEAD = re.compile(
    rf"^(?:conv(?P<k>\d+)\.(?P<conv>weight)|bn(?P<kn>\d+)\.(?P<bn>{_BN})|(?P<fc>fc\d+\.(?:weight|bias)))$"
)
_D2_BOX_HEAD = re.compile(
    rf"^box_head\.(?:conv(?P<k>\d+)\.(?:(?P<conv>weight|bias)|norm\.(?P<bn>{_BN}))"
    rf"|fc(?P<f>\d+)\.(?P<fc>weight|bias))$"
)


def mmdet_fpn_to_detectron2(name: str) -> str:
    """Original SoCo neck (mmdet FPN, P2..P5) to Detectron2.

    ``lateral_convs.0.bn.weight`` -> ``fpn_lateral2.norm.weight``;
    ``fpn_convs.3.conv.weight`` -> ``fpn_output5.weight``.
    """
    m = _MMDET_FPN.match(name)
    if m is None:
        raise UnknownTensorName(name, "mmdet FPN (lateral_convs / fpn_convs)")
    kind = "fpn_lateral" if m["kind"] == "lateral_convs" else "fpn_output"
    level = int(m["i"]) + 2
    return f"{kind}{level}." + (f"norm.{m['bn']}" if m["bn"] else m["conv"])


def soco_head_to_detectron2(name: str) -> str:
    """Original SoCo 4conv1fc head to Detectron2: ``bn3.bias`` -> ``box_head.conv3.norm.bias``."""
    m = _SOCO_HEAD.match(name)
    if m is None:
        raise UnknownTensorName(name, "SoCo 4conv1fc head (conv{k}, bn{k}, fc1)")
    if m["fc"]:
        return f"box_head.{m['fc']}"
    if m["bn"]:
        return f"box_head.conv{m['kn']}.norm.{m['bn']}"
    return f"box_head.conv{m['k']}.{m['conv']}"


def detectron2_fpn_name(name: str) -> str:
    """Validate a Detectron2 FPN name (``fpn_lateral2.norm.weight``) and return it unchanged."""
    if not _D2_FPN.match(name):
        raise UnknownTensorName(name, "Detectron2 FPN (fpn_lateral2..5 / fpn_output2..5)")
    return name


def detectron2_box_head_name(name: str) -> str:
    """Validate a Detectron2 ``FastRCNNConvFCHead`` name (``box_head.conv1.norm.weight``) and return it."""
    if not _D2_BOX_HEAD.match(name):
        raise UnknownTensorName(name, "Detectron2 box head (box_head.conv{k} / box_head.fc{k})")
    return name


def detectron2_fpn_to_mmdet(name: str) -> str:
    """Detectron2 FPN (P2..P5) to an mmdet 3.x ``FPN`` neck with ``start_level=0`` (``ConvModule`` names):
    ``fpn_lateral2.norm.weight`` -> ``lateral_convs.0.bn.weight``; ``fpn_output5.weight`` ->
    ``fpn_convs.3.conv.weight``. The inverse of :func:`mmdet_fpn_to_detectron2`, plus conv biases."""
    m = _D2_FPN.match(name)
    if m is None:
        raise UnknownTensorName(name, "Detectron2 FPN (fpn_lateral2..5 / fpn_output2..5)")
    kind = "lateral_convs" if m["kind"] == "lateral" else "fpn_convs"
    return f"{kind}.{int(m['l']) - 2}." + (f"bn.{m['bn']}" if m["bn"] else f"conv.{m['conv']}")


def detectron2_box_head_to_mmdet(name: str) -> str:
    """Detectron2 ``FastRCNNConvFCHead`` to mmdet 3.x ``ConvFCBBoxHead`` (``Shared4Conv1FCBBoxHead``):
    ``box_head.conv1.norm.bias`` -> ``shared_convs.0.bn.bias``; ``box_head.fc1.weight`` ->
    ``shared_fcs.0.weight``."""
    m = _D2_BOX_HEAD.match(name)
    if m is None:
        raise UnknownTensorName(name, "Detectron2 box head (box_head.conv{k} / box_head.fc{k})")
    if m["fc"]:
        return f"shared_fcs.{int(m['f']) - 1}.{m['fc']}"
    return f"shared_convs.{int(m['k']) - 1}." + (f"bn.{m['bn']}" if m["bn"] else f"conv.{m['conv']}")
