#!/usr/bin/env bash
# ImageNet linear classification of the DenseCL_200ep pretraining (tools/DenseCL_200ep.sh, run folder output/densecl_200ep):
# frozen backbone, MoCo's reference protocol by default (--setting swav / cached for the others).
# Options and KEY VALUE overrides: see tools/launch_linear.sh --help, e.g.
#   tools/DenseCL_200ep_linear.sh --train /data/imagenet/train.zip --val /data/imagenet/val.zip --gpus 8
exec "$(dirname "${BASH_SOURCE[0]}")/launch_linear.sh" densecl_200ep "$@"
