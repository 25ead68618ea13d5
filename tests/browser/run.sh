#!/usr/bin/env bash
# The dashboard's browser tests: builds the binary, then runs the real server on a loopback port
# with a fresh data directory and drives Debian's headless Chromium through Playwright.
# Screenshots of every page (1280 and 390 px wide) go to target/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ! -x /usr/bin/chromium ]]; then
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq || true) && apt-get install -y -qq --no-install-recommends chromium
fi
# Playwright drives the system Chromium; it never downloads a browser of its own.
python3 -c 'import playwright' 2>/dev/null || python3 -m pip install --quiet playwright
cargo build --quiet -p credledger
export SCREENSHOTS="${SCREENSHOTS:-$PWD/target/screenshots}"
exec timeout 300 python3 tests/browser/test_dashboard.py
