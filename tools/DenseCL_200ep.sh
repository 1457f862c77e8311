#!/usr/bin/env bash
# Pretrain with soco/configs/DenseCL_200ep.yaml (DenseCL recipe: 8 GPUs x 32, global batch 256).
# Arguments, environment variables and KEY VALUE overrides: see tools/launch_pretrain.sh --help, e.g.
#   tools/DenseCL_200ep.sh --data /data/imagenet/train --gpus 8
# Image-level method: no --proposals.
exec "$(dirname "${BASH_SOURCE[0]}")/launch_pretrain.sh" soco/configs/DenseCL_200ep.yaml "$@"
