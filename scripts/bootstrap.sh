#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install rrg-mamba into it, editable, with the dev extras.
#
#   bash scripts/bootstrap.sh                        # the locked, tested releases (requirements/lock.txt)  -> ./.venv
#   bash scripts/bootstrap.sh --transformers 4.57    # the locked 4.57 series (requirements/lock-transformers-4.57.txt)
#                                                    #                                          -> ./.venv-transformers-4.57
#   bash scripts/bootstrap.sh --latest               # the newest release of every dependency, no lock, no upper
#                                                    # bounds (what a user installing today gets)  -> ./.venv-latest
#   bash scripts/bootstrap.sh --latest --transformers 4.57   # the same within the 4.57 series -> ./.venv-latest-...
#
# The locked modes install exactly the versions the suite last passed on, whatever is released later; the lock files
# are rewritten only by scripts/update_lock.sh when the whole suite is green on the newest releases. An environment
# lives in a cache folder keyed by a hash of pyproject.toml, this script, the lock file and the mode (for --latest also
# the date, so it picks up new releases once a day), so repeated runs on one machine (CI included) reuse it; the
# ./.venv* name is a link to it. A fresh machine builds it from scratch (a few minutes: torchvision, which timm needs,
# pulls the CUDA build of torch; it runs fine on CPU). RRG_MAMBA_FRESH=1 rebuilds the environment even if cached.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=locked
SERIES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --transformers) SERIES="${2:?--transformers needs a version series, e.g. 4.57}"; shift 2 ;;
        --latest) MODE=latest; shift ;;
        *) echo "bootstrap.sh: unknown argument $1 (expected --transformers SERIES or --latest)" >&2; exit 2 ;;
    esac
done

PYTHON=${PYTHON:-python3}
CACHE_ROOT=${RRG_MAMBA_CACHE:-$HOME/.cache/rrg-mamba}
if [ "$MODE" = latest ]; then
    LOCK=""
    NAME="latest${SERIES:+-transformers-$SERIES}"
    SALT=$(date -u +%Y-%m-%d)
elif [ -n "$SERIES" ]; then
    LOCK="requirements/lock-transformers-$SERIES.txt"
    NAME="transformers-$SERIES"
    SALT=""
else
    LOCK="requirements/lock.txt"
    NAME=""
    SALT=""
fi
if [ -n "$LOCK" ] && [ ! -f "$LOCK" ]; then
    echo "bootstrap.sh: no lock file $LOCK for this mode (supported: default, --transformers 4.57, --latest)" >&2
    exit 2
fi

KEY=$( (cat pyproject.toml scripts/bootstrap.sh ${LOCK:+"$LOCK"}; echo "$MODE $SERIES $SALT") | sha256sum | cut -c1-16)
VENV="$CACHE_ROOT/venv${NAME:+-$NAME}-$KEY"
LINK=".venv${NAME:+-$NAME}"

if [ "${RRG_MAMBA_FRESH:-0}" = 1 ] || [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    echo "[bootstrap] creating $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE_ROOT"
    "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
    if [ -n "$LOCK" ]; then
        # torch and torchvision first, together, so that pip takes the matching pair the lock names.
        "${PIP[@]}" -c "$LOCK" torch torchvision
        "${PIP[@]}" -c "$LOCK" -e ".[dev]"
    else
        # Newest releases: every dependency named in pyproject.toml without its version bounds (the upper bounds
        # hold only what CI has tested; this mode is how CI finds out about the releases beyond them).
        mapfile -t NEWEST < <("$VENV/bin/python" scripts/dependency_names.py pyproject.toml dev)
        "${PIP[@]}" --upgrade torch torchvision
        "${PIP[@]}" --upgrade "${NEWEST[@]}" ${SERIES:+"transformers==$SERIES.*"}
        "${PIP[@]}" --no-deps -e .
    fi
    # transformers' own common test mixins for this release (tests/peer/), from its source distribution
    "$VENV/bin/python" scripts/fetch_transformers_tests.py >/dev/null
    touch "$VENV/.complete"
else
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null
fi
ln -sfn "$VENV" "$LINK"
echo "[bootstrap] environment ready: $LINK -> $VENV ($("$VENV/bin/python" -c 'import transformers; print("transformers", transformers.__version__)'))"
