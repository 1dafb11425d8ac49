#!/usr/bin/env bash
# vLLM on one GPU: the base model at its pinned Hub revision, and our adapter as a LoRA module
# (the folder shipped in this repository, so pinned by its commit), behind an OpenAI-compatible
# API on port 8000. The registry entries in serving/vllm/models.yaml ask it by these names.
#   pip install vllm        # in its own environment (CUDA)
#   TEXT2SQL_VLLM_API_KEY=... serving/vllm/serve.sh
# --generation-config vllm: vLLM's neutral sampling defaults, not the model's
# generation_config.json (Qwen's top_p 0.8, top_k 20, repetition_penalty 1.05 would change even
# greedy answers). The key goes in through VLLM_API_KEY, so it stays out of the process list.
set -euo pipefail
cd "$(dirname "$0")/../.."
VLLM_API_KEY="$TEXT2SQL_VLLM_API_KEY" exec vllm serve Qwen/Qwen2.5-Coder-0.5B-Instruct \
  --revision ea3f2471cf1b1f0db85067f1ef93848e38e88c25 \
  --tokenizer-revision ea3f2471cf1b1f0db85067f1ef93848e38e88c25 \
  --served-model-name qwen2.5-coder-0.5b \
  --enable-lora \
  --max-lora-rank 16 \
  --lora-modules qwen2.5-coder-0.5b-spider=text2sql/adapters/qwen2.5-coder-0.5b-spider \
  --max-model-len 4096 \
  --generation-config vllm \
  --host 0.0.0.0 \
  --port 8000
