#!/usr/bin/env python
"""Self-supervised pretraining (SoCo, MoCo v2, SwAV, DenseCL) with Detectron2's launcher and trainer.

Single process:  python tools/pretrain_net.py --config-file soco/configs/tiny/SoCo_FPN.yaml \
                     PRETRAIN.DATA.IMAGE_ROOT imgs/ PRETRAIN.DATA.PROPOSALS props.json OUTPUT_DIR out/
8 GPUs x 2 nodes: add --num-gpus 8 --num-machines 2 --machine-rank R --dist-url tcp://MASTER:PORT
Resume:          add --resume (continues from OUTPUT_DIR/last_checkpoint).
Probes:          add PRETRAIN.EVAL_PERIOD 500 PRETRAIN.PROBES.IMAGE_ROOT val_subset/ and, for the object-level
                 probes, --register-coco boxes_train train.json images/ --register-coco boxes_val val.json
                 images/ PRETRAIN.PROBES.BOX_TRAIN boxes_train PRETRAIN.PROBES.BOX_TEST boxes_val
"""

import argparse

from detectron2.engine import default_argument_parser

from soco.data import add_register_coco_argument
from soco.engine.distributed import add_launcher_arguments, launch_from_args
from soco.engine.pretrain import run_pretraining


def build_argument_parser() -> argparse.ArgumentParser:
    """Detectron2's standard arguments plus ``--register-coco NAME JSON IMAGE_DIR`` (probe box sets)."""
    parser = default_argument_parser(epilog=__doc__)
    add_launcher_arguments(parser)
    add_register_coco_argument(parser, use="PRETRAIN.PROBES.BOX_TRAIN/BOX_TEST")
    return parser


if __name__ == "__main__":
    parser = build_argument_parser()
    args = parser.parse_args()
    launch_from_args(run_pretraining, args, parser)
