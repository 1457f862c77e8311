#!/usr/bin/env bash
# Pretrain with soco/configs/SwAV_200ep.yaml (SwAV small-batch multi-crop recipe: global batch 256, e.g. 8 GPUs x 32).
# Arguments, environment variables and KEY VALUE overrides: see tools/launch_pretrain.sh --help, e.g.
#   tools/SwAV_200ep.sh --data /data/imagenet/train --gpus 8
# Image-level method: no --proposals.
exec "$(dirname "${BASH_SOURCE[0]}")/launch_pretrain.sh" soco/configs/SwAV_200ep.yaml "$@"
