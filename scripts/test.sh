#!/usr/bin/env bash
# Install everything (dev tools included) and run the whole test suite, slow tests too.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --dev
. .venv/bin/activate
HF_HUB_OFFLINE=1 python -m pytest
