#!/usr/bin/env bash
# One-shot GPU check for a lent GPU machine (one H200, no network, Python 3.12 with torch/torchvision/numpy 2):
# at most 8 minutes. From the repository root, with the wheels of tools/benchmarks/gpu_wheels.txt in .whl/
# (python tools/benchmarks/download_gpu_wheels.py fetches them here):
#
#   tools/benchmarks/gpu_check.sh [--dry-run] [OUT]
#
# 1. installs the wheels with pip --no-index --target (Detectron2, fvcore, iopath, pycocotools, ...);
# 2. prints the environment (nvidia-smi, soco's environment table);
# 3. runs tools/benchmarks/gpu_check.py: SoCo FPN R50 at per-GPU batch 64/128 in bf16 and fp16 (images/s,
#    peak memory, data-time share), LARS foreach vs per parameter, MoCo v2 vs DenseCL images/s, a short
#    pretraining run converted to Detectron2 and a Mask R-CNN forward on CUDA with it;
# 4. leaves OUT/gpu_check.json, OUT/gpu_check.md and the logs (OUT: $OUT, else output/gpu_check).
#
# --dry-run runs the same on CPU with tiny batches (checks the script here; the wheels are only checked, since
# they are for Python 3.12). The exit status is 0 only if every step ran.
set -uo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
out="${1:-${OUT:-output/gpu_check}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# What the driver may take: the rest of the 8 minutes after installing and printing the environment.
budget_s="${GPU_CHECK_BUDGET_S:-420}"

python="${PYTHON:-python3}"
if (( dry_run )) && [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then
    python=.venv/bin/python
fi
site="${SOCO_WHEEL_SITE:-/tmp/soco-site}"

echo "== wheels"
if (( dry_run )); then
    # the machine's interpreter is not this one: check the folder, and that pip accepts every wheel there
    "$python" tools/benchmarks/download_gpu_wheels.py --check || exit 1
    platform_flags=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any)
    target="$(mktemp -d)"
    for version in 3.12 3.10; do
        if [[ "$version" == "3.10" ]]; then wheels=(.whl/*-cp310-none-any.whl); else
            wheels=(); for w in .whl/*.whl; do [[ "$w" == *-cp310-none-any.whl ]] || wheels+=("$w"); done; fi
        "$python" -m pip install -q --no-index --no-deps --no-compile --target "$target" --only-binary=:all: \
            --implementation cp --python-version "$version" "${platform_flags[@]}" "${wheels[@]}" || exit 1
    done
    echo "pip would install $(ls "$target" | grep -c 'dist-info$') distributions (checked into $target)"
    rm -rf "$target"
else
    shopt -s nullglob
    py310=(.whl/*-cp310-none-any.whl)
    others=()
    for w in .whl/*.whl; do [[ "$w" == *-cp310-none-any.whl ]] || others+=("$w"); done
    if (( ${#others[@]} + ${#py310[@]} == 0 )); then
        echo "no wheels in .whl/: run python tools/benchmarks/download_gpu_wheels.py where pip works" >&2
        exit 1
    fi
    pip_install=("$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site")
    "${pip_install[@]}" "${others[@]}" || exit 1
    # sal-detectron2 is pure Python but tagged for CPython 3.10 only
    (( ${#py310[@]} )) && { "${pip_install[@]}" --python-version 3.10 --only-binary=:all: "${py310[@]}" || exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

echo "== environment"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
fi
nproc
"$python" -m soco.collect_env || exit 1

echo "== measurements (at most ${budget_s} s)"
args=(--out "$out")
(( dry_run )) && args+=(--dry-run)
timeout --signal=TERM --kill-after=20 "$budget_s" "$python" tools/benchmarks/gpu_check.py "${args[@]}"
status=$?
if (( status == 124 )); then
    echo "gpu_check.py ran past ${budget_s} s: the steps that finished are in $out/gpu_check.json" >&2
fi
exit "$status"
