#!/usr/bin/env bash
# ImageNet linear classification of the SoCo_FPN_Star_400ep pretraining (tools/SoCo_FPN_Star_400ep.sh, run folder output/soco_fpn_star_400ep):
# frozen backbone, MoCo's reference protocol by default (--setting swav / cached for the others).
# Options and KEY VALUE overrides: see tools/launch_linear.sh --help, e.g.
#   tools/SoCo_FPN_Star_400ep_linear.sh --train /data/imagenet/train.zip --val /data/imagenet/val.zip --gpus 8
exec "$(dirname "${BASH_SOURCE[0]}")/launch_linear.sh" soco_fpn_star_400ep "$@"
