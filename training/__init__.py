"""Fine-tuning on Spider: data (``data``), shared-prefix packing (``packing``), model
backends (``backends``), the training script (``train``) and publishing (``push``).

    python -m training.data --tokenizer qwen2.5-coder-0.5b        # dataset statistics
    python -m training.train --config training/recipes/smoke.yaml  # seconds, end to end
"""
