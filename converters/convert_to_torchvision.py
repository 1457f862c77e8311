"""Convert the backbone of a pretraining checkpoint into a torchvision / mmdetection ``.pth``.

Writes ``{"state_dict": torchvision ResNet names, "author": "soco"}`` (like mmdetection's
``selfsup2mmdet``): ``torchvision.models.resnet50().load_state_dict(ckpt["state_dict"], strict=False)``
leaves only ``fc`` unset, and mmdetection loads it as a ``pretrained`` backbone.

  python converters/convert_to_torchvision.py output/mocov2_200ep/model_final.pth mocov2_r50.pth
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from soco.checkpoint import convert_file, save_torch, torchvision_payload
from soco.checkpoint.cli import converter_parser
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = converter_parser(__doc__, "torchvision backbone to write (.pth)")
    args = parser.parse_args(argv)
    weights, report = convert_file(args.input, args.format, "backbone", args.trust_pickle)
    print(report.summary(args.verbose))
    save_torch(torchvision_payload(weights), args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
