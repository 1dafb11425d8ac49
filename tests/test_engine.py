"""The transformers backend on tiny real models: batching, adapters sharing one base, stopping;
the registry's choice of backend.

    python -m pytest tests/test_engine.py -v
"""

import pytest
import torch

from text2sql import engine
from text2sql.backends import transformers as transformers_backend
from text2sql.registry import Registry
from text2sql.schema import Column, Schema, Table
from text2sql.prompt import build_messages


@pytest.fixture
def registry(tiny_model_dir, tiny_adapter_dirs):
    engine.unload_all()
    data = {
        "default": "tiny",
        "models": {
            "tiny": {"base": {"path": str(tiny_model_dir)}, "generation": {"max_new_tokens": 12}},
            "tiny-a": {"base": {"path": str(tiny_model_dir)}, "adapter": {"path": str(tiny_adapter_dirs["a"])},
                       "generation": {"max_new_tokens": 12}},
            "tiny-b.0.5": {"base": {"path": str(tiny_model_dir)}, "adapter": {"path": str(tiny_adapter_dirs["b"])},
                       "generation": {"max_new_tokens": 12}},
        },
    }
    yield Registry.from_dict(data)
    engine.unload_all()


SCHEMA = Schema(tables=(Table("singer", (Column("id", "INT", samples=(1, 2)), Column("name", "TEXT"))),))
PROMPTS = [build_messages(SCHEMA, q) for q in ("How many singers?", "List all singer names in order please", "Oldest?")]


def test_generates_one_completion_per_prompt(registry):
    generator = engine.load_generator("tiny", registry)
    outputs = generator.generate(PROMPTS)
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
    assert generator.count_tokens(PROMPTS[0]) > 20
    assert generator.max_prompt_tokens > 0


def test_batched_generation_equals_one_at_a_time(registry):
    generator = engine.load_generator("tiny", registry)
    batched = generator.generate(PROMPTS)
    single = [generator.generate([p])[0] for p in PROMPTS]
    assert batched == single


def test_a_model_is_loaded_once(registry):
    assert engine.load_generator("tiny", registry) is engine.load_generator("tiny", registry)


def test_adapters_share_one_base_and_switch_cleanly(registry):
    base = engine.load_generator("tiny", registry)
    tuned_a = engine.load_generator("tiny-a", registry)
    tuned_b = engine.load_generator("tiny-b.0.5", registry)  # a dot, as in qwen2.5-…
    assert base.base is tuned_a.base is tuned_b.base  # one copy of the base weights
    assert tuned_a.base.adapters == {"tiny_a", "tiny_b_0_5"}
    out_base, out_a, out_b = (g.generate(PROMPTS[:1])[0] for g in (base, tuned_a, tuned_b))
    assert len({out_base, out_a, out_b}) == 3, "each adapter (and none) should change the output"
    # switching back and forth gives the same answers again
    assert base.generate(PROMPTS[:1])[0] == out_base
    assert tuned_a.generate(PROMPTS[:1])[0] == out_a
    assert tuned_b.generate(PROMPTS[:1])[0] == out_b


def test_unknown_backend_is_a_clear_error():
    registry = Registry.from_dict({"models": {"odd": {"base": {"path": "."}, "backend": "nope"}}})
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        engine.load_generator("odd", registry)


def test_stopping_criterion_stops_each_row_at_the_end_of_its_sql(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    prompt = tokenizer("prompt text", return_tensors="pt")["input_ids"]
    rows = ["SELECT 1;", "SELECT count(*) FROM t", "```sql\nSELECT 1\n```", "Sure, here"]
    # as during generate(): a shared prompt, then each row's new tokens (finished rows padded)
    new = [tokenizer(r, return_tensors="pt")["input_ids"][0] for r in rows]
    width = max(len(n) for n in new)
    pad = torch.tensor([tokenizer.pad_token_id])
    batch = torch.stack([torch.cat([prompt[0], n, pad.repeat(width - len(n))]) for n in new])
    flags = transformers_backend._StopAtEndOfSQL(tokenizer, prompt_length=prompt.shape[1])(batch, None)
    assert flags.tolist() == [True, False, True, False]


def _spec(backend: str):
    return Registry.from_dict({"models": {"m": {"base": {"path": "."}, "backend": backend}}}).get("m")


def test_auto_prefers_llama_cpp_on_cpu_machines_that_have_it(monkeypatch):
    monkeypatch.delenv("TEXT2SQL_ENGINE", raising=False)
    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(engine, "nvidia_gpu_present", lambda: False)
    assert engine.backend_for(_spec("auto")) == "llama.cpp"
    assert engine.backend_for(_spec("transformers")) == "transformers"  # a named backend is kept


def test_auto_falls_back_to_transformers_without_llama_cpp_or_with_a_gpu(monkeypatch):
    monkeypatch.delenv("TEXT2SQL_ENGINE", raising=False)
    monkeypatch.setattr(engine, "nvidia_gpu_present", lambda: False)
    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: False)
    assert engine.backend_for(_spec("auto")) == "transformers"
    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(engine, "nvidia_gpu_present", lambda: True)
    assert engine.backend_for(_spec("auto")) == "transformers"


def test_the_engine_setting_forces_the_backend_of_auto_entries(monkeypatch):
    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(engine, "nvidia_gpu_present", lambda: False)
    monkeypatch.setenv("TEXT2SQL_ENGINE", "transformers")
    assert engine.backend_for(_spec("auto")) == "transformers"
    assert engine.backend_for(_spec("llama.cpp")) == "llama.cpp"


def test_the_packaged_default_models_choose_their_backend():
    from text2sql.registry import Registry as Packaged

    registry = Packaged.load()
    assert registry.get().backend == "llama.cpp"  # the 1.5B: its GGUF on llama.cpp only
    assert registry.get("qwen2.5-coder-0.5b-spider").backend == "auto"
    assert registry.get("qwen2.5-coder-0.5b-spider-transformers").backend == "transformers"
