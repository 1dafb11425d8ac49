#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA paths (tests/test_cuda.py: QLoRA with bitsandbytes
# 4-bit NF4, bf16 LoRA, the engine serving bf16 on the GPU), then the engine, sampling,
# prefix-cache and training tests on the GPU. Those check that batching and the prefix cache
# give exactly the plain model's tokens, which holds in fp32 only (in bf16 a random tiny
# model's near-tied logits flip with kernel shapes), so they run with TEXT2SQL_DTYPE=float32.
# CI has no GPU: there test_cuda.py is skipped. Run this where you have one.
#   scripts/gpu_check.sh [more pytest arguments]      # PYTHON=... to pick the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU here'; print(torch.cuda.get_device_name(), 'torch', torch.__version__)"
"$PYTHON" -m pytest -p no:cacheprovider -rs tests/test_cuda.py "$@"
TEXT2SQL_DTYPE=float32 "$PYTHON" -m pytest -p no:cacheprovider -m "not slow" -rs \
  tests/test_engine.py tests/test_sampling.py tests/test_prefix_cache.py tests/test_train.py "$@"
