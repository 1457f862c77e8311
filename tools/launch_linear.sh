#!/usr/bin/env bash
# Launch tools/train_linear.py (ImageNet linear classification) for one pretraining run, on one node of a job.
# Used by the per-recipe launchers (tools/SoCo_FPN_100ep_linear.sh, ...); run it from anywhere.
#
#   tools/launch_linear.sh RUN_NAME --train DIR_OR_ZIP --val DIR_OR_ZIP [--weights FILE] [--setting NAME]
#                          [--output DIR] [--gpus N] [--nodes N] [--node-rank R] [--master-addr HOST]
#                          [--master-port PORT] [--ims-per-gpu B] [--dry-run] [KEY VALUE ...]
#
# RUN_NAME is the pretraining's run folder name (soco_fpn_100ep): --weights defaults to
# output/RUN_NAME/model_final.pth, --output to output/RUN_NAME_linear[_SETTING]. --setting picks the config:
# reference (default; MoCo's protocol, soco/configs/linear/Base-Linear.yaml), swav (lr 0.3, cosine) or
# cached (cached features: fast, NOT the reference protocol). Environment variables, used when the option is
# absent: WEIGHTS, TRAIN_DIR, VAL_DIR, OUTPUT_DIR, GPUS_PER_NODE (else SLURM_GPUS_ON_NODE, else nvidia-smi),
# NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (default 28653), IMS_PER_GPU. The run always passes --resume.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    usage
    exit 0
fi
run_name="$1"
shift

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/launch_common.sh
source "$repo_root/tools/launch_common.sh"

weights="${WEIGHTS:-}"
train_dir="${TRAIN_DIR:-}"
val_dir="${VAL_DIR:-}"
output_dir="${OUTPUT_DIR:-}"
setting="reference"
layout_from_environment 28653

while [[ $# -gt 0 ]]; do
    case "$1" in
        --weights) need_value "$@"; weights="$2"; shift 2 ;;
        --train) need_value "$@"; train_dir="$2"; shift 2 ;;
        --val) need_value "$@"; val_dir="$2"; shift 2 ;;
        --setting) need_value "$@"; setting="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --*) layout_option "$@"; shift "$layout_shift" ;;
        *) break ;;
    esac
done

case "$setting" in
    reference) config=soco/configs/linear/Base-Linear.yaml; suffix="" ;;
    swav) config=soco/configs/linear/Linear_SwAV_setting.yaml; suffix="_swav" ;;
    cached) config=soco/configs/linear/Linear_cached_features.yaml; suffix="_cached" ;;
    *) echo "error: --setting must be reference, swav or cached, got $setting" >&2; exit 2 ;;
esac
weights="$(absolute "${weights:-output/$run_name/model_final.pth}")"
output_dir="$(absolute "${output_dir:-output/${run_name}_linear${suffix}}")"
train_dir="$(absolute "$train_dir")"
val_dir="$(absolute "$val_dir")"
cd "$repo_root"

if [[ -z "$train_dir" || -z "$val_dir" ]]; then
    echo "error: pass --train and --val (ImageFolder trees, train.zip / val.zip or map files) or set TRAIN_DIR / VAL_DIR" >&2
    exit 2
fi
finish_layout "$@"

command=(
    "$python" tools/train_linear.py
    --config-file "$config"
    --num-gpus "$gpus" --num-machines "$nodes" --machine-rank "$node_rank"
    --dist-url "tcp://${master_addr}:${master_port}"
    --resume
    MODEL.WEIGHTS "$weights" LINEAR.DATA.TRAIN "$train_dir" LINEAR.DATA.VAL "$val_dir" OUTPUT_DIR "$output_dir"
)
[[ -n "$ims_per_gpu" ]] && command+=(SOLVER.IMS_PER_GPU "$ims_per_gpu")
command+=("$@")
echo "linear ($setting) of $weights: node $node_rank of $nodes, $gpus GPU(s), output $output_dir" >&2
run_or_print "${command[@]}"
