#!/usr/bin/env bash
# ImageNet linear classification of the SwAV_200ep pretraining (tools/SwAV_200ep.sh, run folder output/swav_200ep):
# frozen backbone, MoCo's reference protocol by default (--setting swav / cached for the others).
# Options and KEY VALUE overrides: see tools/launch_linear.sh --help, e.g.
#   tools/SwAV_200ep_linear.sh --train /data/imagenet/train.zip --val /data/imagenet/val.zip --gpus 8
exec "$(dirname "${BASH_SOURCE[0]}")/launch_linear.sh" swav_200ep "$@"
