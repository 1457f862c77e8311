#!/usr/bin/env python
"""Submit soco's jobs to SLURM with submitit (or run them as local subprocesses with --cluster local).

  # SoCo FPN 100 epochs on 2 nodes x 8 GPUs, requeued on pre-emption / at the time limit:
  python tools/submit.py pretrain --nodes 2 --gpus-per-node 8 --partition gpu --time 3-00:00:00 \\
      --config-file soco/configs/SoCo_FPN_100ep.yaml PRETRAIN.DATA.IMAGE_ROOT imagenet/train \\
      PRETRAIN.DATA.PROPOSALS train_ratio3size0308post.store OUTPUT_DIR output/soco_fpn_100ep
  # selective search as a 256-task array, then the filter job (run again: only unfinished shards):
  python tools/submit.py proposals --image-root imagenet/train --output proposals_raw --num-shards 256 \\
      --partition cpu --cpus-per-task 32 --time 12:00:00 --store train_ratio3size0308post.store
  # fine-tuning on 8 GPUs:
  python tools/submit.py finetune --gpus-per-node 8 \\
      --config-file detectron2_configs/coco/mask_rcnn_R_50_FPN_1x_soco_fpn_100ep.yaml OUTPUT_DIR output/ft

Every sub-command takes --partition, --time, --mem, --cpus-per-task, --account, --constraint and extra
sbatch flags (--sbatch=--qos=high, repeatable), all before the KEY VALUE config overrides; see
`python tools/submit.py SUB-COMMAND --help`. Jobs print where submitit keeps their scripts and logs.
"""

import argparse
import logging

from soco.engine.cluster import CLUSTER_JOB_REGISTRY, add_resource_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for _, kind in sorted(CLUSTER_JOB_REGISTRY):
        sub = commands.add_parser(kind.NAME, help=kind.HELP, description=kind.__doc__)
        kind.add_arguments(sub)
        add_resource_arguments(sub)
        sub.set_defaults(kind=kind)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for job in args.kind.submit(args):
        print(f"{args.command} job {job.job_id}: logs in {job.paths.folder}")


if __name__ == "__main__":
    main()
