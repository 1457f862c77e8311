#!/usr/bin/env bash
# Pretrain with soco/configs/SoCo_C4_400ep.yaml (paper recipe: 16 GPUs, global batch 2048).
# Arguments, environment variables and KEY VALUE overrides: see tools/launch_pretrain.sh --help, e.g.
#   tools/SoCo_C4_400ep.sh --data /data/imagenet/train --proposals /data/train_ratio3size0308post.json \
#       --gpus 8 --nodes 2 --node-rank 0 --master-addr node0
exec "$(dirname "${BASH_SOURCE[0]}")/launch_pretrain.sh" soco/configs/SoCo_C4_400ep.yaml "$@"
