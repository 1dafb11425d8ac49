"""The CUDA paths, on a GPU: QLoRA (bitsandbytes 4-bit NF4, bf16 compute) and bf16 LoRA
training on a tiny real model, and the inference engine in bf16 on the GPU. Skipped without
CUDA (CI has none); scripts/gpu_check.sh runs them, with the engine and sampling tests, on a
GPU machine.

    python -m pytest tests/test_cuda.py -v
"""

import importlib.util

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import SPIDER
from tests.test_train import logged_losses, train
from text2sql import engine
from text2sql.backends import transformers as transformers_backend
from text2sql.prompt import build_messages
from text2sql.registry import Registry
from text2sql.schema import Column, Schema, Table


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

needs_spider = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")
SCHEMA = Schema(tables=(Table("singer", (Column("id", "INT"), Column("name", "TEXT"), Column("age", "INT"))),))


def assert_trained(out, backend: str, weights_phrase: str) -> None:
    log = (out / "train.log").read_text()
    assert backend in log and weights_phrase in log, log[-2000:]
    losses = logged_losses(out)
    assert len(losses) == 8 and all(loss == loss for loss in losses)  # no NaN
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)


@needs_spider
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_trains_on_cuda_and_the_adapter_changes_the_model(tmp_path, tiny_registry, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    train(out, "--max_steps", "8", "--save_steps", "4")  # quantize auto: 4-bit on CUDA
    assert_trained(out, "qlora-cuda", "4-bit NF4 (double quant), bf16 compute")

    # The adapter, trained against the 4-bit base, loads onto the plain bf16 base on the GPU
    # (as the engine serves it) and moves its logits.
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).to("cuda").eval()
    inputs = tokenizer("SELECT count(*) FROM", return_tensors="pt").to("cuda")
    with torch.no_grad():
        base_logits = base(**inputs).logits.float()
        tuned = PeftModel.from_pretrained(base, out).eval()
        tuned_logits = tuned(**inputs).logits.float()
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-2)


@needs_spider
def test_bf16_lora_trains_on_cuda(tmp_path, tiny_registry):
    out = tmp_path / "run"
    train(out, "--max_steps", "8", "--quantize", "none")
    assert_trained(out, "lora-cuda", "base weights bf16")


def test_the_engine_serves_bf16_on_the_gpu_with_an_adapter(tiny_model_dir, tiny_adapter_dirs):
    engine.unload_all()
    registry = Registry.from_dict(
        {
            "models": {
                "base": {"base": {"path": str(tiny_model_dir)}, "generation": {"max_new_tokens": 12}},
                "tuned": {
                    "base": {"path": str(tiny_model_dir)},
                    "adapter": {"path": str(tiny_adapter_dirs["a"])},
                    "generation": {"max_new_tokens": 12},
                },
            }
        }
    )
    prompts = [build_messages(SCHEMA, q) for q in ("How many singers?", "Oldest singer?")]
    try:
        base, tuned = engine.load_generator("base", registry), engine.load_generator("tuned", registry)
        (loaded,) = transformers_backend._LoadedBase.cache.values()
        assert loaded.model.device.type == "cuda" and loaded.model.dtype == torch.bfloat16
        assert base.generate(prompts) == base.generate(prompts)  # greedy is repeatable
        assert tuned.generate(prompts) != base.generate(prompts)  # the adapter is applied
        candidates = tuned.sample(prompts, k=4, temperature=1.0, seed=0)
        assert [c[0].text for c in candidates] == tuned.generate(prompts)
        assert all(len(c) == 4 for c in candidates)
    finally:
        engine.unload_all()
