"""The model backends behind ``text2sql.engine``'s registry, one module each (imported on
first use): ``llamacpp`` (GGUF on the CPU through llama-cpp-python) and ``transformers``
(safetensors or the dequantised GGUF, peft adapters, CUDA). What they share lives here.
"""

from __future__ import annotations


MIN_REUSED_PREFIX = 16
"""Below this many shared prompt tokens a cached prefix saves too little to bother."""


def common_prefix_length(token_ids: list[list[int]]) -> int:
    """Leading tokens all prompts share, leaving each at least one token of its own
    (the first next-token distribution is computed from a prompt's own last token)."""
    limit = min(len(ids) for ids in token_ids) - 1
    length = 0
    while length < limit and all(ids[length] == token_ids[0][length] for ids in token_ids):
        length += 1
    return length
