#!/usr/bin/env bash
# One command to set up everything on a fresh machine (Python 3.11, CPU):
#   bash tools/setup_env.sh
# Creates .venv/ at the repository root with the pinned OpenMMLab stack and this
# package in editable mode. mmcv 2.1.0 is built from its sdist WITH its compiled
# CPU ops once per machine and cached outside the clone (keyed by torch version,
# Python and architecture), so a second run only reinstalls from local files.
#
# Environment knobs:
#   VENV=path               where to create the environment (default: <repo>/.venv)
#   PARTIALNET_CACHE=path   wheel cache (default: ~/.cache/partialnet_mm)
#   PYTHON=python3.11       interpreter used to create the venv
#   FORCE_CUDA=1            build mmcv's CUDA ops too (needs nvcc matching torch's CUDA;
#                           set TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0"); cached separately
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
CACHE=${PARTIALNET_CACHE:-$HOME/.cache/partialnet_mm}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
FORCE_CUDA=${FORCE_CUDA:-0}

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION and build tools"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    "setuptools<82" wheel ninja

# --- mmcv with compiled ops, built once per (mmcv, torch, python, arch) -------
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
OPS=cpu; [ "$FORCE_CUDA" = 1 ] && OPS=cuda
KEY="mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG-$(uname -m)-$OPS"
WHEEL_DIR="$CACHE/$KEY"
if ! compgen -G "$WHEEL_DIR/mmcv-$MMCV_VERSION-*.whl" > /dev/null; then
    log "no cached mmcv wheel in $WHEEL_DIR: building mmcv $MMCV_VERSION with $OPS ops (CPU ops: about 18 min on 2 cores)"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    # The sdist's metadata step imports torch and pkg_resources, hence no isolation.
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
        "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0's setup.py hard-codes C++17.
    grep -q -- '-std=c++17' "$SRC/setup.py" || { echo "mmcv setup.py has no -std=c++17 flag to raise" >&2; exit 1; }
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" MAX_JOBS="$(nproc)" \
        "${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$BUILD/dist" .)
    mkdir -p "$WHEEL_DIR"
    # copy then rename, so an interrupted build never leaves a half-written wheel in the cache
    for w in "$BUILD"/dist/mmcv-*.whl; do
        cp "$w" "$WHEEL_DIR/.partial" && mv "$WHEEL_DIR/.partial" "$WHEEL_DIR/$(basename "$w")"
    done
    log "cached $(ls "$WHEEL_DIR")"
else
    log "using cached mmcv wheel from $WHEEL_DIR"
fi

log "installing mmcv (cached wheel), the OpenMMLab stack (mmdet, mmpretrain, mmseg) and partialnet_mm (editable)"
"${PIP[@]}" install -q "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl \
    -r "$ROOT/requirements/stack.txt" -e "$ROOT[tests]"

"$PY" - <<'PYEOF'
import torch, torchvision, mmengine, mmcv, mmdet, mmpretrain, mmseg
from mmcv.ops import RoIAlign, nms  # compiled ops must be present
import partialnet_mm
print(f"torch {torch.__version__} torchvision {torchvision.__version__} mmengine {mmengine.__version__} "
      f"mmcv {mmcv.__version__} (ops ok) mmdet {mmdet.__version__} mmpretrain {mmpretrain.__version__} "
      f"mmseg {mmseg.__version__} "
      f"partialnet_mm {partialnet_mm.__version__}")
PYEOF
log "done: activate with 'source $VENV/bin/activate'"
