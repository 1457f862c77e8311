#!/usr/bin/env python
"""Linear classification of a frozen pretrained ResNet (ImageNet top-1 / top-5), Detectron2-style.

Reference protocol (MoCo's; 100 epochs, lr 30, batch 256):
  python tools/train_linear.py --config-file soco/configs/linear/Base-Linear.yaml \
      MODEL.WEIGHTS output/soco_fpn_100ep/model_final.pth \
      LINEAR.DATA.TRAIN imagenet/train.zip LINEAR.DATA.VAL imagenet/val.zip OUTPUT_DIR output/linear_soco_fpn
SwAV setting: --config-file soco/configs/linear/Linear_SwAV_setting.yaml
Fast, NOT the reference protocol (features of centre crops cached once):
  --config-file soco/configs/linear/Linear_cached_features.yaml
8 GPUs: add --num-gpus 8, or start under torchrun (the global batch stays 256; SOLVER.IMS_PER_GPU 32 keeps
32 per GPU on any number of GPUs, lr scaled with the batch).
Resume: add --resume (continues from OUTPUT_DIR/last_checkpoint). Results: OUTPUT_DIR/linear_results.json.
"""

from detectron2.engine import default_argument_parser

from soco.engine.distributed import add_launcher_arguments, launch_from_args
from soco.engine.linear import run_linear

if __name__ == "__main__":
    parser = default_argument_parser(epilog=__doc__)
    add_launcher_arguments(parser)
    launch_from_args(run_linear, parser.parse_args(), parser)
