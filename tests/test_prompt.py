"""The prompt builder and context fitting.

    python -m pytest tests/test_prompt.py -v
"""

import pytest

from text2sql.prompt import (
    SYSTEM_PROMPT, build_completion, build_messages, fit_schema, likely_tables, table_relevance,
)
from text2sql.schema import Column, Schema, Table


def _schema(n_tables=3, samples=("alpha", "beta", "gamma")):
    tables = [
        Table(name="singer", columns=(Column("singer_id", "INT", samples=(1, 2, 3)), Column("name", "TEXT", samples=samples))),
        Table(name="stadium", columns=(Column("stadium_id", "INT", samples=(1, 2, 3)), Column("capacity", "INT"))),
    ]
    tables += [Table(name=f"unrelated_{i}", columns=(Column("x", "TEXT", samples=samples),)) for i in range(n_tables - 2)]
    return Schema(tables=tuple(tables))


def test_messages_put_schema_first_and_question_last():
    messages = build_messages(_schema(), "How many singers are there?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    user = messages[1]["content"]
    assert user.startswith("Database schema:\nCREATE TABLE singer (")
    assert user.endswith("\n\nQuestion: How many singers are there?")
    assert "-- example: ['alpha', 'beta', 'gamma']" in user


def test_questions_on_one_schema_share_the_prompt_prefix():
    a = build_messages(_schema(), "first?")[1]["content"]
    b = build_messages(_schema(), "second?")[1]["content"]
    prefix = a[: a.index("Question:")]
    assert b.startswith(prefix)


def test_completion_is_the_bare_sql():
    assert build_completion("  SELECT 1 \n") == [{"role": "assistant", "content": "SELECT 1"}]


def _word_count(messages):
    return sum(len(m["content"].split()) for m in messages)


def test_fitting_leaves_short_schemas_alone():
    schema = _schema()
    fitted, warnings = fit_schema(schema, "How many singers?", _word_count, 10_000)
    assert fitted == schema and warnings == []


def test_fitting_drops_sample_values_first():
    schema = _schema(samples=tuple(f"value number {i}" for i in range(3)))
    full = _word_count(build_messages(schema, "q"))
    fitted, warnings = fit_schema(schema, "q", _word_count, full - 5)
    assert fitted.table_names() == schema.table_names()
    assert all(len(c.samples) <= 1 for t in fitted.tables for c in t.columns)
    assert "one example value" in warnings[0]


def test_fitting_then_drops_the_least_related_tables():
    schema = _schema(n_tables=30)
    question = "What is the name of the singer with the largest stadium capacity?"
    no_samples = schema.with_sample_limit(0)
    budget = _word_count(build_messages(no_samples.without_tables({f"unrelated_{i}" for i in range(28)}), question)) + 3
    fitted, warnings = fit_schema(schema, question, _word_count, budget)
    assert {"singer", "stadium"} <= set(fitted.table_names())
    assert len(fitted.tables) < 30
    assert _word_count(build_messages(fitted, question)) <= budget
    assert "least related" in warnings[-1]


def test_relevance_prefers_tables_named_in_the_question():
    scores = table_relevance(_schema(n_tables=4), "list every singer name")
    assert scores["singer"] > scores["stadium"] >= 0
    assert scores["singer"] > scores["unrelated_0"]


def test_likely_tables_keeps_the_most_related_in_the_schemas_order():
    schema = _schema(n_tables=5)
    question = "Which stadium has the largest capacity, and which singer sang there?"
    shown, warnings = likely_tables(schema, question, 2)
    assert shown.table_names() == ["singer", "stadium"]
    assert warnings == [
        "The prompt shows the 2 table(s) most related to the question (setting schema_tables); "
        "left out: unrelated_0, unrelated_1, unrelated_2"
    ]
    shown, _ = likely_tables(schema, "What is the stadium capacity?", 1)
    assert shown.table_names() == ["stadium"]
    # no table is related: ties keep the schema's order
    assert likely_tables(schema, "How many?", 2)[0].table_names() == ["singer", "stadium"]


def test_likely_tables_leaves_a_schema_with_few_enough_tables_alone():
    schema = _schema(n_tables=3)
    assert likely_tables(schema, "anything", 3) == (schema, [])
    with pytest.raises(ValueError, match="TEXT2SQL_SCHEMA_TABLES must be 0"):
        likely_tables(schema, "anything", -1)
