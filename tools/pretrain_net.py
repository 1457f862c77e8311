#!/usr/bin/env python
"""Self-supervised pretraining (SoCo, MoCo v2, SwAV, DenseCL) with Detectron2's launcher and trainer.

Single process:  python tools/pretrain_net.py --config-file soco/configs/tiny/SoCo_FPN.yaml \
                     PRETRAIN.DATA.IMAGE_ROOT imgs/ PRETRAIN.DATA.PROPOSALS props.json OUTPUT_DIR out/
8 GPUs x 2 nodes: add --num-gpus 8 --num-machines 2 --machine-rank R --dist-url tcp://MASTER:PORT
Resume:          add --resume (continues from OUTPUT_DIR/last_checkpoint).
"""

from detectron2.engine import default_argument_parser, launch

from soco.engine.pretrain import run_pretraining

if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        run_pretraining,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
