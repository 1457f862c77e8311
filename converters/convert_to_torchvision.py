"""Convert the backbone of a pretraining checkpoint into a torchvision / mmdetection ``.pth``.

Writes ``{"state_dict": torchvision ResNet names, "author": "soco"}`` (like mmdetection's
``selfsup2mmdet``): ``torchvision.models.resnet50().load_state_dict(ckpt["state_dict"], strict=False)``
leaves only ``fc`` unset, and mmdetection loads it as a ``pretrained`` backbone.

  python converters/convert_to_torchvision.py output/mocov2_200ep/model_final.pth mocov2_r50.pth
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from soco.checkpoint import save_torch, torchvision_payload
from soco.checkpoint.cli import write_backbone
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    return write_backbone(
        argv, __doc__, "torchvision backbone to write (.pth)", torchvision_payload, save_torch
    )


if __name__ == "__main__":
    sys.exit(run(main))
