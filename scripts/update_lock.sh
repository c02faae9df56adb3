#!/usr/bin/env bash
# Move the lock files forward: for the default environment and for each other supported transformers series, build a
# fresh environment with the newest releases (scripts/bootstrap.sh --latest), run the whole test suite in it, and only
# if it is green rewrite the lock file with what was installed. When the default environment's transformers is a newer
# minor than pyproject.toml's tested upper bound, the bound moves with it.
#
#   bash scripts/update_lock.sh                 # all: default lock + every requirements/lock-transformers-*.txt
#   bash scripts/update_lock.sh default         # only requirements/lock.txt
#   bash scripts/update_lock.sh 4.57            # only requirements/lock-transformers-4.57.txt
#
# A suite that fails leaves its lock file untouched and makes the script exit non-zero; the failing run's log stays in
# runs/update_lock-<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(default)
    for lock in requirements/lock-transformers-*.txt; do
        series=${lock#requirements/lock-transformers-}
        TARGETS+=("${series%.txt}")
    done
fi

mkdir -p runs
status=0
for target in "${TARGETS[@]}"; do
    if [ "$target" = default ]; then
        args=(--latest); link=.venv-latest; lock=requirements/lock.txt
    else
        args=(--latest --transformers "$target"); link=.venv-latest-transformers-$target
        lock=requirements/lock-transformers-$target.txt
    fi
    log=runs/update_lock-$target.log
    echo "[update_lock] $target: fresh environment with the newest releases"
    RRG_MAMBA_FRESH=1 bash scripts/bootstrap.sh "${args[@]}"
    echo "[update_lock] $target: running the whole suite (log: $log)"
    if "$link/bin/python" -m pytest tests -p no:cacheprovider >"$log" 2>&1; then
        "$link/bin/python" scripts/write_lock.py "$lock" $([ "$target" = default ] && echo --bump-pyproject)
        echo "[update_lock] $target: green; $lock rewritten"
    else
        tail -n 5 "$log"
        echo "[update_lock] $target: the suite failed on the newest releases; $lock left as it was" >&2
        status=1
    fi
done
exit $status
