#!/usr/bin/env bash
# What scripts/test runs against the live `scripts/dev --once` stack: Prometheus evaluating every
# dashboard query, then the operator's console in Debian's Chromium (tests/browser/console.mjs,
# screenshots in .local/browser/).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
python3 scripts/lib/check_dashboard.py
say "the console in a real browser (Chromium driven by playwright-core; screenshots in .local/browser/)"
node tests/browser/console.mjs
