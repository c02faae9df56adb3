#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install rrg-mamba into it, editable, with the dev extras.
#
#   bash scripts/bootstrap.sh                        # newest transformers (5.x)      -> ./.venv
#   bash scripts/bootstrap.sh --transformers 4.57    # transformers 4.57.* instead    -> ./.venv-transformers-4.57
#
# The environment lives in a cache folder keyed by a hash of pyproject.toml, this script and the transformers
# series, so repeated runs on one machine (CI included) reuse it; the ./.venv* name is a link to it. A fresh machine
# builds it from scratch (a few minutes: torchvision, which timm needs, pulls the CUDA build of torch; it runs fine
# on CPU). With 4.57, pip picks the huggingface-hub / tokenizers releases that series needs.
set -euo pipefail
cd "$(dirname "$0")/.."

SERIES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --transformers) SERIES="${2:?--transformers needs a version series, e.g. 4.57}"; shift 2 ;;
        *) echo "bootstrap.sh: unknown argument $1 (expected --transformers SERIES)" >&2; exit 2 ;;
    esac
done

PYTHON=${PYTHON:-python3}
CACHE_ROOT=${RRG_MAMBA_CACHE:-$HOME/.cache/rrg-mamba}
KEY=$( (cat pyproject.toml scripts/bootstrap.sh; echo "$SERIES") | sha256sum | cut -c1-16)
if [ -n "$SERIES" ]; then
    VENV="$CACHE_ROOT/venv-transformers-$SERIES-$KEY"
    LINK=".venv-transformers-$SERIES"
    PIN=("transformers==$SERIES.*")
else
    VENV="$CACHE_ROOT/venv-$KEY"
    LINK=".venv"
    PIN=()
fi

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    echo "[bootstrap] creating $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE_ROOT"
    "$PYTHON" -m venv "$VENV"
    # torch and torchvision are installed together so that pip picks a matching pair (a CPU-only torch
    # wheel cannot load torchvision's compiled ops).
    "$VENV/bin/pip" install --quiet "torch>=2.4" torchvision
    "$VENV/bin/pip" install --quiet -e ".[dev]" ${PIN[@]+"${PIN[@]}"}
    touch "$VENV/.complete"
else
    "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e . >/dev/null
fi
ln -sfn "$VENV" "$LINK"
echo "[bootstrap] environment ready: $LINK -> $VENV ($("$VENV/bin/python" -c 'import transformers; print("transformers", transformers.__version__)'))"
