"""Convert a pretraining checkpoint into MMDetection 3.x weights (``load_from`` of ``mmdet_configs/``).

Reads every release convert_to_detectron2.py reads (soco's own checkpoints, the official SoCo, MoCo,
SwAV, DenseCL / OpenSelfSup and torchvision releases, converted Detectron2 files) and writes
``{"state_dict": ..., "meta": ...}`` under mmdet's module names: ``backbone.*`` (torchvision ResNet
names) and, for FPN weights, ``neck.lateral_convs/fpn_convs.*`` and
``roi_head.bbox_head.shared_convs/shared_fcs.*`` of a ``Shared4Conv1FCBBoxHead``. ``--target c4`` puts
res5 in ``roi_head.shared_head.layer4.*`` instead. Every tensor is placed or the conversion stops.

  python converters/convert_to_mmdetection.py output/soco_fpn_100ep/model_final.pth \\
      output/soco_fpn_100ep/model_final_mmdet.pth
  # then, in MMDetection 3.x:
  python tools/train.py mmdet_configs/mask-rcnn_r50_fpn_soco_ms-1x_coco.py \\
      --cfg-options load_from=output/soco_fpn_100ep/model_final_mmdet.pth
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from soco.checkpoint import KEEP_CHOICES, convert_file, save_torch
from soco.checkpoint.cli import converter_parser
from soco.checkpoint.mmdet import MMDET_TARGETS, mmdet_payload, mmdet_state_dict, part_counts
from soco.utils.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = converter_parser(__doc__, "MMDetection weights to write (.pth)")
    parser.add_argument(
        "--target",
        default="fpn",
        choices=MMDET_TARGETS,
        help="'fpn': Mask R-CNN R50-FPN (default); 'c4': res5 as the RoI shared head",
    )
    parser.add_argument(
        "--keep", default="all", choices=KEEP_CHOICES, help="'all': backbone + FPN + box head when present"
    )
    args = parser.parse_args(argv)
    weights, report = convert_file(args.input, args.format, args.keep, args.trust_pickle)
    print(report.summary(args.verbose))
    state = mmdet_state_dict(weights, args.target)
    counts = ", ".join(f"{part} {count}" for part, count in part_counts(state).items())
    print(f"MMDetection ({args.target}): {len(state)} tensors ({counts})")
    meta = {
        "author": "soco",
        "source": args.input,
        "source_format": report.format_name,
        "target": args.target,
    }
    save_torch(mmdet_payload(state, meta), args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
