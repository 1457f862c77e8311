#!/usr/bin/env bash
# ImageNet linear classification of the MoCoV2_200ep pretraining (tools/MoCoV2_200ep.sh, run folder output/mocov2_200ep):
# frozen backbone, MoCo's reference protocol by default (--setting swav / cached for the others).
# Options and KEY VALUE overrides: see tools/launch_linear.sh --help, e.g.
#   tools/MoCoV2_200ep_linear.sh --train /data/imagenet/train.zip --val /data/imagenet/val.zip --gpus 8
exec "$(dirname "${BASH_SOURCE[0]}")/launch_linear.sh" mocov2_200ep "$@"
