#!/usr/bin/env bash
# Launch tools/pretrain_net.py for one pretraining config on one node of a (multi-node) job.
# Used by the per-recipe launchers (tools/SoCo_FPN_100ep.sh, ...); run it from anywhere.
#
#   tools/launch_pretrain.sh CONFIG --data DIR [--proposals FILE] [--output DIR] [--gpus N] [--nodes N]
#                            [--node-rank R] [--master-addr HOST] [--master-port PORT] [--ims-per-gpu B]
#                            [--dry-run] [KEY VALUE ...]
#
# Every option also reads an environment variable (torchrun/SLURM names), used when the option is absent:
#   --data DATA_DIR, --proposals PROPOSALS, --output OUTPUT_DIR, --gpus GPUS_PER_NODE (else SLURM_GPUS_ON_NODE,
#   else the number of GPUs nvidia-smi lists), --nodes NNODES (else SLURM_NNODES, else 1),
#   --node-rank NODE_RANK (else SLURM_NODEID, else 0), --master-addr MASTER_ADDR (else the first host of
#   SLURM_JOB_NODELIST, else 127.0.0.1), --master-port MASTER_PORT (else 28652), --ims-per-gpu IMS_PER_GPU.
# The config's SOLVER.IMS_PER_BATCH is the global batch; --ims-per-gpu B keeps B images per GPU instead
# (global batch B x GPUs, lr scaled with it). KEY VALUE pairs after the options override config keys.
# The run always passes --resume: relaunching the same command continues from OUTPUT_DIR/last_checkpoint.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    usage
    exit 0
fi
config="$1"
shift

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/launch_common.sh
source "$repo_root/tools/launch_common.sh"
if [[ -f "$config" ]]; then
    config="$(absolute "$config")"
elif [[ ! -f "$repo_root/$config" ]]; then
    echo "error: config file $config not found (relative to $PWD or to the repository root $repo_root)" >&2
    exit 2
fi

data_dir="${DATA_DIR:-}"
proposals="${PROPOSALS:-}"
# Default run folder: the config name in lower case (output/soco_fpn_100ep), as detectron2_configs/ expects.
output_dir="${OUTPUT_DIR:-output/$(basename "$config" .yaml | tr '[:upper:]' '[:lower:]')}"
layout_from_environment 28652

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) need_value "$@"; data_dir="$2"; shift 2 ;;
        --proposals) need_value "$@"; proposals="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --*) layout_option "$@"; shift "$layout_shift" ;;
        *) break ;;
    esac
done

data_dir="$(absolute "$data_dir")"
proposals="$(absolute "$proposals")"
output_dir="$(absolute "$output_dir")"
cd "$repo_root"

if [[ -z "$data_dir" ]]; then
    echo "error: no image data: pass --data DIR (image folder, ImageNet train tree or train_map.txt) or set DATA_DIR" >&2
    exit 2
fi
finish_layout "$@"

command=(
    "$python" tools/pretrain_net.py
    --config-file "$config"
    --num-gpus "$gpus" --num-machines "$nodes" --machine-rank "$node_rank"
    --dist-url "tcp://${master_addr}:${master_port}"
    --resume
    PRETRAIN.DATA.IMAGE_ROOT "$data_dir" OUTPUT_DIR "$output_dir"
)
# Image-level methods (MoCo v2, SwAV, DenseCL) take no proposals; SoCo refuses to start without them.
[[ -n "$proposals" ]] && command+=(PRETRAIN.DATA.PROPOSALS "$proposals")
# List the corpus once per job (rank 0 writes the index, every rank and every relaunch reads it), unless the
# trailing overrides name an index of their own.
[[ " $* " == *" PRETRAIN.DATA.CORPUS_INDEX "* ]] || command+=(PRETRAIN.DATA.CORPUS_INDEX "$output_dir/corpus_index.txt")
[[ -n "$ims_per_gpu" ]] && command+=(SOLVER.IMS_PER_GPU "$ims_per_gpu")
command+=("$@")
echo "node $node_rank of $nodes, $gpus GPU(s), master ${master_addr}:${master_port}, output $output_dir" >&2
run_or_print "${command[@]}"
