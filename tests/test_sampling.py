"""k candidates per prompt from the transformers backend (tiny real model): the greedy answer
first, seeded samples after it, true sequence log-likelihoods, one batched decoding.

    python -m pytest tests/test_sampling.py -v
"""

import pytest
import torch

from text2sql import engine
from text2sql.prompt import build_messages
from text2sql.registry import Registry
from text2sql.schema import Column, Schema, Table


SCHEMA = Schema(
    tables=(
        Table("singer", (Column("id", "INT", samples=(1, 2)), Column("name", "TEXT"), Column("age", "INT"))),
        Table("concert", (Column("id", "INT"), Column("singer_id", "INT"), Column("year", "TEXT"))),
    )
)
PROMPTS = [build_messages(SCHEMA, q) for q in ("How many singers?", "Which year had the most concerts?")]


@pytest.fixture
def generator(tiny_model_dir, monkeypatch):
    # fp32 on every CPU: the log-likelihood and batching checks compare paths that compute in
    # different shapes, which bf16 (what AVX512-BF16 CPUs load) rounds differently.
    monkeypatch.setenv("TEXT2SQL_DTYPE", "float32")
    engine.unload_all()
    registry = Registry.from_dict(
        {"models": {"tiny": {"base": {"path": str(tiny_model_dir)}, "generation": {"max_new_tokens": 16}}}}
    )
    yield engine.load_generator("tiny", registry)
    engine.unload_all()


def test_the_first_candidate_is_the_greedy_answer_and_the_others_are_samples(generator):
    candidates = generator.sample(PROMPTS, k=5, temperature=1.0, seed=0)
    assert [len(c) for c in candidates] == [5, 5]
    assert [c[0].text for c in candidates] == generator.generate(PROMPTS)
    for per_prompt in candidates:
        assert len({s.text for s in per_prompt[1:]}) > 1, "samples at temperature 1 should differ"


def test_the_same_seed_gives_the_same_candidates_and_another_seed_others(generator):
    first = generator.sample(PROMPTS, k=4, temperature=1.0, seed=7)
    assert generator.sample(PROMPTS, k=4, temperature=1.0, seed=7) == first
    other = generator.sample(PROMPTS, k=4, temperature=1.0, seed=8)
    assert [c[0] for c in other] == [c[0] for c in first]  # the greedy ones don't depend on the seed
    assert [c[1:] for c in other] != [c[1:] for c in first]


def test_temperature_zero_gives_k_greedy_copies(generator):
    candidates = generator.sample(PROMPTS[:1], k=3, temperature=0.0, seed=0)[0]
    assert len({(s.text, s.token_ids) for s in candidates}) == 1


def test_logprob_is_the_sequence_log_likelihood_of_each_candidate(generator):
    """Teacher forcing on the plain model (no cache, no batching) gives the same sums."""
    model, tokenizer = generator.base.model, generator.tokenizer
    prompt = tokenizer(generator.render(PROMPTS[1]), add_special_tokens=False)["input_ids"]
    for candidate in generator.sample(PROMPTS, k=4, temperature=1.5, seed=3)[1]:
        ids = torch.tensor([prompt + list(candidate.token_ids)], device=model.device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        expected = sum(logprobs[len(prompt) - 1 + i, token].item() for i, token in enumerate(candidate.token_ids))
        assert candidate.logprob == pytest.approx(expected, abs=1e-3)
        assert candidate.logprob < 0 and candidate.tokens == len(candidate.token_ids) > 0


def forward_batch_sizes(generator, prompts, **sampling) -> tuple[list[int], list]:
    """The batch size of every forward pass ``sample`` makes, and what it returned."""
    batch_sizes = []
    hook = generator.base.model.register_forward_hook(lambda module, args, kwargs, output: batch_sizes.append(
        kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        candidates = generator.sample(prompts, **sampling)
    finally:
        hook.remove()
    return batch_sizes, candidates


def test_k_candidates_come_from_one_batched_decoding(generator):
    """After the prefix, one pass over the prompts' own tokens (one row per prompt), then one
    pass per decoding step carrying every candidate of every prompt: never a pass per candidate."""
    generator.generate(PROMPTS[:1])  # the schema prefix is now stored: sample() won't recompute it
    batch_sizes, candidates = forward_batch_sizes(generator, PROMPTS, k=8, temperature=1.0, seed=0)
    assert [len(c) for c in candidates] == [8, 8]
    assert batch_sizes[0] == len(PROMPTS)  # the prompts' own tokens, once each
    assert max(batch_sizes[1:]) == len(PROMPTS) * 8  # the draws part at once on this random model
    assert len(batch_sizes) == max(s.tokens for c in candidates for s in c)  # one pass per token written


@pytest.mark.parametrize("temperature", [0.0, 0.003, 0.01, 1.0])
def test_candidates_that_agree_so_far_share_one_row(generator, temperature):
    """Each decoding pass carries one row per distinct (prompt, tokens written so far) among
    the unfinished candidates: agreeing candidates cost one row, and only part when they differ."""
    generator.generate(PROMPTS[:1])
    batch_sizes, candidates = forward_batch_sizes(generator, PROMPTS, k=6, temperature=temperature, seed=1)
    for step in range(1, len(batch_sizes)):
        written = {(i, s.token_ids[:step]) for i, c in enumerate(candidates) for s in c if s.tokens > step}
        assert batch_sizes[step] == len(written), step
    if temperature == 0.0:
        assert set(batch_sizes) == {len(PROMPTS)}
    elif temperature < 0.1:  # on this random model, low temperatures part the candidates gradually
        assert any(len(PROMPTS) < size < len(PROMPTS) * 6 for size in batch_sizes)


def test_k_below_one_is_refused(generator):
    with pytest.raises(ValueError, match="k must be at least 1"):
        generator.sample(PROMPTS, k=0, temperature=1.0, seed=0)


def test_on_text_hears_the_first_completion_grow_to_its_final_text(generator):
    heard = []
    [[first, *_], _] = generator.sample(PROMPTS, k=3, temperature=1.0, seed=0, on_text=heard.append)
    assert len(heard) > 1 and heard[-1] == first.text
    streamed = []
    assert generator.generate(PROMPTS[:1], on_text=streamed.append) == [streamed[-1]]
