"""Fine-tune (or evaluate) a Detectron2 detector from converted pretraining weights.

  python tools/train_net.py --num-gpus 8 \\
      --config-file detectron2_configs/coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml
  python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/ft/model_final.pth
  # own data in COCO format (name, annotation json, image folder; repeat for each split):
  python tools/train_net.py --config-file detectron2_configs/coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml \\
      --register-coco mydata_train train.json images/ --register-coco mydata_val val.json images/ \\
      DATASETS.TRAIN '("mydata_train",)' DATASETS.TEST '("mydata_val",)' MODEL.ROI_HEADS.NUM_CLASSES 3

Builtin datasets (COCO, LVIS, Pascal VOC) are read from $DETECTRON2_DATASETS (default ./datasets).
Several machines: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT.
"""
from __future__ import annotations

import argparse

from detectron2.engine import default_argument_parser

from soco.data import add_register_coco_argument
from soco.detection import run_transfer
from soco.engine.distributed import add_launcher_arguments, launch_from_args


def build_argument_parser() -> argparse.ArgumentParser:
    """Detectron2's standard arguments plus ``--register-coco NAME JSON IMAGE_DIR``."""
    parser = default_argument_parser(epilog=__doc__)
    add_launcher_arguments(parser)
    add_register_coco_argument(parser)
    return parser


def main(args: argparse.Namespace):
    """Fine-tune, or evaluate with ``--eval-only`` (one process of ``launch``)."""
    return run_transfer(args)


if __name__ == "__main__":
    parser = build_argument_parser()
    args = parser.parse_args()
    print("Command Line Args:", args)
    launch_from_args(main, args, parser)
