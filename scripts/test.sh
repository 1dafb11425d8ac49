#!/usr/bin/env bash
# Install everything (dev tools included) and run the whole test suite, slow tests too.
# The browser tests drive Debian's Chromium (Playwright can't download its own browsers here):
# it is installed when this runs as root with apt; otherwise the run ends by saying what was
# skipped and the command that brings it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --dev
CHROMIUM_PACKAGES="chromium fonts-noto-color-emoji"   # the emoji font renders the app's status marks
if ! command -v chromium >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "Installing Debian's $CHROMIUM_PACKAGES for the browser tests..."
  { apt-get update -qq && apt-get install -y -qq $CHROMIUM_PACKAGES >/dev/null; } ||
    echo "Could not install $CHROMIUM_PACKAGES with apt-get." >&2
fi
. .venv/bin/activate
status=0
HF_HUB_OFFLINE=1 python -m pytest || status=$?
if ! command -v chromium >/dev/null; then
  echo >&2
  echo "SKIPPED: the browser tests (tests/app/test_browser.py) need Debian's Chromium, which is missing." >&2
  echo "Install it, then run this script again:  sudo apt-get install -y $CHROMIUM_PACKAGES" >&2
fi
exit $status
