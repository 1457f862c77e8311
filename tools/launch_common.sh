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
