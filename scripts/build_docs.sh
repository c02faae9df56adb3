#!/usr/bin/env bash
# Builds the documentation (guide pages from README.md + the API reference from the docstrings) into docs/_build/html,
# offline, with every warning an error: an undocumented or renamed public name, a docstring Sphinx cannot parse, or a
# README section that moved fails the build.
#   bash scripts/build_docs.sh           build (--clean: delete docs/_build first)
#   bash scripts/build_docs.sh --serve   build, then serve on http://localhost:8000 (PORT=... to change)
#   bash scripts/build_docs.sh --open    build, then open index.html in a browser
# Needs the dev extras (pip install -e ".[dev]": sphinx, myst-parser, furo); PYTHON=... picks the interpreter
# (default: .venv/bin/python when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
OUT=docs/_build/html
action=build
for arg in "$@"; do
    case $arg in
        --serve) action=serve ;;
        --open) action=open ;;
        --clean) rm -rf docs/_build ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "build_docs.sh: unknown option $arg (--serve, --open, --clean)" >&2; exit 2 ;;
    esac
done

# -E: read every page again (autodoc does not notice edited docstrings, and warnings come only from pages read);
# -W: warnings are errors; --keep-going: report all of them; -n would also check every cross-reference, which needs
# the inventories of torch / transformers from the internet (intersphinx), so it stays off.
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PYTHON" -m sphinx -b html -E -W --keep-going -q docs "$OUT"
echo "docs built: $OUT/index.html"

case $action in
    serve) exec "$PYTHON" -m http.server "${PORT:-8000}" --bind 127.0.0.1 --directory "$OUT" ;;
    open) "$PYTHON" -m webbrowser "file://$PWD/$OUT/index.html" ;;
esac
