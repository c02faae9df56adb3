#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install rrg-mamba into it, editable, with the dev extras.
#
# The environment lives in a cache folder keyed by a hash of pyproject.toml, so repeated runs on one machine
# (CI included) reuse it; ./.venv is a link to it. A fresh machine builds it from scratch (a few minutes:
# torchvision, which timm needs, pulls the CUDA build of torch; it runs fine on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE_ROOT=${RRG_MAMBA_CACHE:-$HOME/.cache/rrg-mamba}
KEY=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
VENV="$CACHE_ROOT/venv-$KEY"

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    echo "[bootstrap] creating $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE_ROOT"
    "$PYTHON" -m venv "$VENV"
    # torch and torchvision are installed together so that pip picks a matching pair (a CPU-only torch
    # wheel cannot load torchvision's compiled ops).
    "$VENV/bin/pip" install --quiet "torch>=2.4" torchvision
    "$VENV/bin/pip" install --quiet -e ".[dev]"
    touch "$VENV/.complete"
else
    "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e . >/dev/null
fi
ln -sfn "$VENV" .venv
echo "[bootstrap] environment ready: .venv -> $VENV"
