#!/usr/bin/env bash
# ImageNet linear classification of the SoCo_C4_100ep pretraining (tools/SoCo_C4_100ep.sh, run folder output/soco_c4_100ep):
# frozen backbone, MoCo's reference protocol by default (--setting swav / cached for the others).
# Options and KEY VALUE overrides: see tools/launch_linear.sh --help, e.g.
#   tools/SoCo_C4_100ep_linear.sh --train /data/imagenet/train.zip --val /data/imagenet/val.zip --gpus 8
exec "$(dirname "${BASH_SOURCE[0]}")/launch_linear.sh" soco_c4_100ep "$@"
