#!/usr/bin/env bash
# Render the demo's report page in a real headless browser (Debian's chromium) and save a screenshot to look at.
#
#   scripts/check_demo_page.sh [DEMO_DIR] [SCREENSHOT]      (defaults: rrg-mamba-demo, DEMO_DIR/screenshot.png)
#
# Checks before rendering that index.html exists and that every image it references exists (relative paths, so the
# folder works offline and after moving it); then renders it with no network and no profile of its own kept.
# Install the browser with: apt-get update && apt-get install -y chromium
set -euo pipefail

demo_dir="${1:-rrg-mamba-demo}"
screenshot="${2:-$demo_dir/screenshot.png}"
page="$demo_dir/index.html"
browser="$(command -v chromium || command -v chromium-browser || true)"

[[ -f "$page" ]] || { echo "no $page: run 'rrg-mamba demo --output_dir $demo_dir' first" >&2; exit 1; }
[[ -n "$browser" ]] || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 1; }

missing=0
while IFS= read -r src; do
    case "$src" in
        /*|*://*) echo "absolute or remote image path in $page: $src" >&2; missing=1 ;;
        *) path="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(sys.argv[1]))' "$src")"
           [[ -f "$demo_dir/$path" ]] || { echo "missing image: $demo_dir/$path" >&2; missing=1; } ;;
    esac
done < <(grep -o 'src="[^"]*"' "$page" | sed 's/^src="//; s/"$//')
[[ "$missing" == 0 ]] || exit 1

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$screenshot")"
"$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" \
    --screenshot="$(realpath -m "$screenshot")" --window-size=1280,2000 \
    "file://$(realpath "$page")" > "$profile/chromium.log" 2>&1 \
    || { cat "$profile/chromium.log" >&2; exit 1; }
[[ -s "$screenshot" ]] || { echo "chromium wrote no screenshot" >&2; cat "$profile/chromium.log" >&2; exit 1; }
echo "screenshot: $screenshot"
