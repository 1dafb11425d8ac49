"""Training data: hardness oversampling, the database-held-out split, records, prompt identity.

    python -m pytest tests/test_training_data.py -v
"""

import dataclasses

import pytest
from transformers import AutoTokenizer

from tests.conftest import SPIDER
from text2sql.pipeline import Database
from text2sql.prompt import build_messages, fit_schema
from text2sql.spider import Example, Spider
from training.data import (
    DataArguments,
    bucket_counts,
    build,
    label,
    oversample,
    prompt_token_counter,
    split_by_database,
    to_record,
    whole_databases,
)
from training.packing import first_label_index, tokenize_example


needs_spider = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")

# (SQL, hardness, has a set operation, copies with the default factors)
FIXTURE = [
    ("SELECT count(*) FROM singer", "easy", False, 1),
    ("SELECT name, age FROM singer WHERE age > 30", "medium", False, 1),
    ("SELECT name FROM singer WHERE age > 30 GROUP BY country ORDER BY age", "hard", False, 2),
    ("SELECT name FROM singer WHERE age > 30 GROUP BY country ORDER BY age LIMIT 1", "extra", False, 3),
    ("SELECT name FROM singer INTERSECT SELECT name FROM singer_in_concert", "hard", True, 4),
    ("SELECT name, age FROM singer WHERE age > 30 UNION SELECT name, age FROM singer", "extra", True, 4),
    ("SELECT name FROM (SELECT name FROM a UNION SELECT name FROM b)", "easy", True, 4),  # nested: still x4
]


def _fixture_items():
    examples = [Example(i, "fixture", "db", f"question {i}", sql) for i, (sql, *_) in enumerate(FIXTURE)]
    return label(examples)


def test_fixture_is_labelled_as_expected():
    items = _fixture_items()
    assert [(i.hardness, i.set_operation) for i in items] == [(h, s) for _, h, s, _ in FIXTURE]


def test_oversampling_counts_on_the_fixture_are_exact():
    items = _fixture_items()
    mixed = oversample(items, DataArguments(), seed=0)
    copies = {item.example.id: sum(m.example.id == item.example.id for m in mixed) for item in items}
    assert list(copies.values()) == [n for *_, n in FIXTURE]
    assert bucket_counts(items) == {"easy": 2, "medium": 1, "hard": 2, "extra": 2, "set_ops": 3, "total": 7}
    assert bucket_counts(mixed) == {"easy": 5, "medium": 1, "hard": 6, "extra": 7, "set_ops": 12, "total": 19}


def test_factors_are_configurable_and_fractions_are_seeded():
    items = _fixture_items() * 200
    args = DataArguments(oversample_hard=1.5, oversample_extra=1.0, oversample_set_ops=1.0)
    first, again, other = (oversample(items, args, seed) for seed in (1, 1, 2))
    assert [m.example.id for m in first] == [m.example.id for m in again]
    assert [m.example.id for m in first] != [m.example.id for m in other]
    hard = sum(m.hardness == "hard" for m in first)
    assert 400 * 1.5 - 60 <= hard <= 400 * 1.5 + 60  # 400 hard items, each 1 or 2 copies at p=0.5
    assert sum(m.hardness == "extra" for m in first) == 400  # factor 1: untouched


@needs_spider
def test_oversampling_counts_on_spider_train_are_exact():
    items = label(Spider(SPIDER).examples("train"))
    mixed = oversample(items, DataArguments(), seed=0)
    assert bucket_counts(items) == {"easy": 1983, "medium": 2999, "hard": 1921, "extra": 1756, "set_ops": 526, "total": 8659}
    assert bucket_counts(mixed) == {"easy": 2001, "medium": 2999, "hard": 4442, "extra": 5488, "set_ops": 2104, "total": 14930}
    # the rule, re-derived: set operations x4, else hard x2 / extra x3
    assert len(mixed) == sum(4 if i.set_operation else {"hard": 2, "extra": 3}.get(i.hardness, 1) for i in items)


@needs_spider
def test_validation_holds_out_whole_databases():
    examples = Spider(SPIDER).examples("train")
    train, held = split_by_database(examples, 0.05, seed=42)
    assert {e.db_id for e in train}.isdisjoint({e.db_id for e in held})
    assert len(train) + len(held) == 8659
    assert 0.05 * 8659 <= len(held) < 0.05 * 8659 + 600  # overshoots by at most one database
    assert split_by_database(examples, 0.05, seed=42) == (train, held)
    assert split_by_database(examples, 0.05, seed=7)[1] != held


@needs_spider
def test_small_runs_take_whole_databases():
    examples = Spider(SPIDER).examples("train")
    kept = whole_databases(examples, 32, seed=3)
    assert len(kept) == 32
    assert len({e.db_id for e in kept}) < 8


@needs_spider
def test_missing_databases_keep_their_tables_json_schema():
    spider = Spider(SPIDER)
    [example] = [e for e in spider.examples("train") if e.db_id == "baseball_1"][:1]
    [item] = label([example])
    record = to_record(spider, item, None, 3072)
    user = record["prompt"][1]["content"]
    assert not spider.has_database("baseball_1")
    assert "CREATE TABLE" in user and "-- example:" not in user
    assert record["completion"] == [{"role": "assistant", "content": example.query}]


@needs_spider
@pytest.mark.parametrize("budget", [3072, 400])  # 400: the schema must be fitted, as the app fits it
def test_training_prompt_is_the_inference_prompt(smollm2_tokenizer_dir, budget):
    """The tokens a training example's completion follows are exactly the tokens the app
    feeds the model for the same database and question (schema read, fitting, template)."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    spider = Spider(SPIDER)
    example = next(e for e in spider.examples("train") if e.db_id == "department_management")
    [item] = label([example])
    record = to_record(spider, item, prompt_token_counter(tokenizer), budget)
    tokens = tokenize_example(tokenizer, record["prompt"], record["completion"])
    trained_prompt = tokens["input_ids"][: first_label_index(tokens["labels"])]

    # the app: pipeline.generate_sql_batch + TransformersGenerator.render/generate
    schema = Database.from_file(spider.db_path(example.db_id)).schema
    fitted, warnings = fit_schema(schema, example.question, prompt_token_counter(tokenizer), budget)
    text = tokenizer.apply_chat_template(build_messages(fitted, example.question), tokenize=False, add_generation_prompt=True)
    inference_prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert trained_prompt == inference_prompt
    assert bool(warnings) == (budget == 400)
    assert tokenizer.decode(tokens["input_ids"][len(trained_prompt) :]).startswith(example.query)


@needs_spider
def test_build_gives_records_and_a_report():
    args = DataArguments(spider_dir=str(SPIDER), max_train_examples=40, max_eval_examples=10)
    data = build(args, seed=0)
    assert len(data.eval) == 10 and len(data.train) >= 40
    assert {r["db_id"] for r in data.train}.isdisjoint({r["db_id"] for r in data.eval})
    record = data.train[0]
    assert [m["role"] for m in record["prompt"]] == ["system", "user"]
    assert record["completion"][0]["role"] == "assistant"
    assert "after oversampling" in data.report and "hard" in data.report
    assert dataclasses.asdict(args)["oversample_set_ops"] == 4.0


@needs_spider
@pytest.mark.slow
def test_qwen_training_prompt_is_the_inference_prompt_for_an_oversized_schema():
    """With Qwen2.5-Coder-0.5B's tokenizer (the one the recipes train) and the app's 3072-token budget, on the one train
    database whose schema is too long (its sample values get trimmed, as in the app)."""
    from text2sql.registry import Registry, resolve_weights

    tokenizer = AutoTokenizer.from_pretrained(resolve_weights(Registry.load().get("qwen2.5-coder-0.5b").base).path)
    spider = Spider(SPIDER)
    example = next(e for e in spider.examples("train") if e.db_id == "cre_Drama_Workshop_Groups")
    [item] = label([example])
    count = prompt_token_counter(tokenizer)
    record = to_record(spider, item, count, 3072)
    tokens = tokenize_example(tokenizer, record["prompt"], record["completion"])
    schema = Database.from_file(spider.db_path(example.db_id)).schema
    fitted, warnings = fit_schema(schema, example.question, count, 3072)
    text = tokenizer.apply_chat_template(build_messages(fitted, example.question), tokenize=False, add_generation_prompt=True)
    assert warnings
    assert tokens["input_ids"][: first_label_index(tokens["labels"])] == tokenizer(text, add_special_tokens=False)["input_ids"]
