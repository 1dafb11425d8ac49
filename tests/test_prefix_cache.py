"""Schema-prefix KV reuse in the transformers backend gives the same text as plain generation.

python -m pytest tests/test_prefix_cache.py -v
"""

import zlib

import pytest

from text2sql import engine
from text2sql.backends import common_prefix_length
from text2sql.backends import transformers as transformers_backend
from text2sql.prompt import build_messages
from text2sql.registry import Registry
from text2sql.schema import Column, Schema, Table


@pytest.fixture
def registry(tiny_model_dir, tiny_adapter_dirs, monkeypatch):
    # Exact equality of paths that batch and cache differently holds in fp32; in bf16 (what
    # AVX512-BF16 CPUs load) a random tiny model's near-tied logits flip with kernel shapes.
    monkeypatch.setenv("TEXT2SQL_DTYPE", "float32")
    engine.unload_all()
    generation = {"max_new_tokens": 16}
    yield Registry.from_dict(
        {
            "default": "tiny",
            "models": {
                "tiny": {"base": {"path": str(tiny_model_dir)}, "generation": generation},
                "tiny-a": {
                    "base": {"path": str(tiny_model_dir)},
                    "adapter": {"path": str(tiny_adapter_dirs["a"])},
                    "generation": generation,
                },
            },
        }
    )
    engine.unload_all()


SINGER = Schema(
    tables=(
        Table("singer", (Column("id", "INT", samples=(1, 2)), Column("name", "TEXT"), Column("age", "INT"))),
        Table("concert", (Column("id", "INT"), Column("singer_id", "INT"), Column("year", "TEXT"))),
    )
)
PETS = Schema(tables=(Table("pets", (Column("pet_id", "INT"), Column("weight", "REAL"))),))
QUESTIONS = [
    "How many singers do we have?",
    "List the names of all singers older than thirty, ordered by age from the oldest to the youngest.",
    "Oldest?",
    "Which year had the most concerts?",
]


def plain(generator, prompts):
    return [generator.generate([p], reuse_prefix=False)[0] for p in prompts]


def test_a_batch_sharing_a_schema_gives_the_plain_one_at_a_time_outputs(registry):
    generator = engine.load_generator("tiny", registry)
    prompts = [build_messages(SINGER, q) for q in QUESTIONS]
    expected = plain(generator, prompts)
    assert len(set(expected)) > 1, "the questions should lead to different outputs"
    assert generator.generate(prompts) == expected
    assert generator.prefixes.entries, "the shared prefix should be stored"


def test_rows_that_stop_early_leave_the_batch_without_changing_the_others(registry, monkeypatch):
    # A deterministic stand-in for "the SQL is complete", used by both paths, that fires at
    # different steps for different texts (the tiny model's outputs part after ~60 characters).
    monkeypatch.setattr(transformers_backend, "sql_is_complete", lambda text: len(text) > 64 and zlib.crc32(text.encode()) % 3 == 0)
    generator = engine.load_generator("tiny", registry)
    prompts = [build_messages(SINGER, q) for q in QUESTIONS]
    expected = plain(generator, prompts)
    lengths = {len(generator.tokenizer(text)["input_ids"]) for text in expected}
    assert len(lengths) > 1, "the rows should stop after different numbers of tokens"
    assert generator.generate(prompts) == expected


def test_a_stored_prefix_is_reused_by_later_calls_and_outputs_stay_the_same(registry):
    generator = engine.load_generator("tiny", registry)
    prompts = [build_messages(SINGER, q) for q in QUESTIONS]
    expected = plain(generator, prompts)
    generator.generate(prompts[:2])
    stored_ids = generator.prefixes.entries[0][0]
    later_ids = generator.tokenizer(generator.render(prompts[3]), add_special_tokens=False)["input_ids"]
    reused, _ = generator.prefixes.longest_match(later_ids)
    assert reused >= len(stored_ids) - 8, "most of the stored schema prefix should be reusable"
    assert generator.generate(prompts[2:]) == expected[2:]
    # one question at a time (the app's case) goes through the store too
    assert [generator.generate([p])[0] for p in prompts] == expected


def test_prompts_without_a_long_shared_prefix_are_generated_plainly(registry):
    generator = engine.load_generator("tiny", registry)
    prompts = [build_messages(SINGER, QUESTIONS[0]), build_messages(PETS, "How many pets weigh more than 10?")]
    assert generator.generate(prompts) == plain(generator, prompts)


def test_each_adapter_keeps_its_own_prefix_cache(registry):
    base = engine.load_generator("tiny", registry)
    tuned = engine.load_generator("tiny-a", registry)
    prompts = [build_messages(SINGER, q) for q in QUESTIONS[:2]]
    expected_base, expected_tuned = plain(base, prompts), plain(tuned, prompts)
    assert expected_base != expected_tuned
    assert base.generate(prompts) == expected_base
    assert tuned.generate(prompts) == expected_tuned  # a cache built without the adapter would differ
    assert base.generate(prompts) == expected_base


def test_the_common_prefix_leaves_every_prompt_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_length([[7, 2], [1, 2]]) == 0


def test_the_store_keeps_the_most_recent_prefixes():
    store = transformers_backend.PrefixStore(size=2)
    for ids in ([1, 2, 3], [1, 2, 4, 5], [9, 9]):
        store.add(ids, [ids])
    assert [ids for ids, _ in store.entries] == [[9, 9], [1, 2, 4, 5]]
    assert store.longest_match([1, 2, 4, 6]) == (3, [[1, 2, 4, 5]])
    assert store.longest_match([3]) == (0, None)
