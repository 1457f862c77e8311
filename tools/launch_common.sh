# Shell helpers of the launchers (tools/launch_pretrain.sh, tools/launch_linear.sh); sourced, not run.
# They resolve the process layout from options or torchrun/SLURM-style environment variables.

# Paths given relative to the caller's directory stay valid after moving to the repository root.
absolute() { if [[ -z "$1" || "$1" == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }

first_slurm_host() {
    if [[ -n "${SLURM_JOB_NODELIST:-}" ]] && command -v scontrol >/dev/null 2>&1; then
        scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1
    fi
}

count_gpus() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
    fi
}

need_value() {
    if [[ $# -lt 2 || -z "$2" ]]; then
        echo "error: option $1 needs a value" >&2
        exit 2
    fi
}

# GPUs of this node when neither --gpus nor GPUS_PER_NODE / SLURM_GPUS_ON_NODE gave them (at least 1).
default_gpus() {
    local n
    n="$(count_gpus)"
    n="${n:-0}"
    (( n > 0 )) || n=1
    echo "$n"
}

# The master host when neither --master-addr nor MASTER_ADDR gave it: SLURM's first node, else localhost.
default_master_addr() {
    local host
    host="$(first_slurm_host)"
    echo "${host:-127.0.0.1}"
}

# The repository's virtual environment's python, unless PYTHON is set.
default_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; elif [[ -x .venv/bin/python ]]; then echo .venv/bin/python; else echo python; fi
}

# The process layout from torchrun/SLURM-style variables, before the options (which override them):
# gpus, nodes, node_rank, master_addr, master_port ($1: this launcher's default port), ims_per_gpu, dry_run.
layout_from_environment() {
    gpus="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-}}"
    nodes="${NNODES:-${SLURM_NNODES:-1}}"
    node_rank="${NODE_RANK:-${SLURM_NODEID:-0}}"
    master_addr="${MASTER_ADDR:-}"
    master_port="${MASTER_PORT:-$1}"
    ims_per_gpu="${IMS_PER_GPU:-}"
    dry_run=0
}

# One option the launchers share (--output and the process layout) at the start of "$@": sets its variable
# and layout_shift, the number of words it took; an unknown option is an error.
layout_option() {
    layout_shift=2
    case "$1" in
        --output) need_value "$@"; output_dir="$2" ;;
        --gpus) need_value "$@"; gpus="$2" ;;
        --nodes) need_value "$@"; nodes="$2" ;;
        --node-rank) need_value "$@"; node_rank="$2" ;;
        --master-addr) need_value "$@"; master_addr="$2" ;;
        --master-port) need_value "$@"; master_port="$2" ;;
        --ims-per-gpu) need_value "$@"; ims_per_gpu="$2" ;;
        --dry-run) dry_run=1; layout_shift=1 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
}

# After the options: the trailing KEY VALUE overrides ("$@") come in pairs; the GPUs, master host and python
# that neither an option nor a variable gave.
finish_layout() {
    if (( $# % 2 )); then
        echo "error: config overrides must come in KEY VALUE pairs, got: $*" >&2
        exit 2
    fi
    [[ -n "$gpus" ]] || gpus="$(default_gpus)"
    [[ -n "$master_addr" ]] || master_addr="$(default_master_addr)"
    python="$(default_python)"
}

# Print the command (--dry-run) or replace this shell with it.
run_or_print() {
    if (( dry_run )); then
        printf '%q ' "$@"
        echo
        exit 0
    fi
    exec "$@"
}
