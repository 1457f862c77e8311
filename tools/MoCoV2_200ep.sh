#!/usr/bin/env bash
# Pretrain with soco/configs/MoCoV2_200ep.yaml (MoCo v2 recipe: 8 GPUs x 32, global batch 256).
# Arguments, environment variables and KEY VALUE overrides: see tools/launch_pretrain.sh --help, e.g.
#   tools/MoCoV2_200ep.sh --data /data/imagenet/train --gpus 8
# Image-level method: no --proposals.
exec "$(dirname "${BASH_SOURCE[0]}")/launch_pretrain.sh" soco/configs/MoCoV2_200ep.yaml "$@"
