"""The one prompt builder: schema + question -> chat messages, for inference and training.

``build_messages`` is what the app, the CLI, the evaluation and the training data all
call, so the model is always asked the same way it was trained (a test renders both
paths and compares the text). The schema goes first and the question last, so every
question about one database shares the same prompt prefix (its KV cache can be reused).

``build_repair_messages`` continues that conversation after a query failed: the model's
query as its turn, then the SQLite error and a request for a corrected query (best-of-k's
repair round, ``text2sql.selection``). It starts with the same tokens as the first prompt,
so the schema's cached KV serves it too.

``fit_schema`` keeps long schemas inside the model's context: it measures the prompt
with the model's own token counter and trims sample values first, then the tables least
related to the question, and says what it dropped.

``likely_tables`` shows the prompt only the tables most related to the question (setting
``schema_tables``; off by default: it gains EX on Spider dev but gives up the per-database
prefix reuse, see results/schema-tables/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from text2sql.schema import Schema, table_ddl


SYSTEM_PROMPT = (
    "You are a text-to-SQL assistant. Given a SQLite database schema and a question, "
    "write one SQLite query that answers the question. "
    "Reply with the SQL query only: no explanation and no markdown."
)

Messages = list[dict[str, str]]


def user_message(schema: Schema, question: str) -> str:
    return f"Database schema:\n{schema.to_ddl(samples=True)}\n\nQuestion: {question.strip()}"


def build_messages(schema: Schema, question: str) -> Messages:
    """Chat messages asking for the SQL that answers ``question`` over ``schema``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(schema, question)},
    ]


REPAIR_REQUEST = (
    "Running that query failed: {error}\n"
    "Write a corrected SQLite query that answers the question. "
    "Reply with the SQL query only: no explanation and no markdown."
)


def build_repair_messages(schema: Schema, question: str, failed_sql: str, error: str) -> Messages:
    """``build_messages`` followed by the failed query and its error, asking for a fix."""
    return build_messages(schema, question) + [
        {"role": "assistant", "content": failed_sql.strip()},
        {"role": "user", "content": REPAIR_REQUEST.format(error=error.strip())},
    ]


def build_completion(sql: str) -> Messages:
    """The assistant turn a training example teaches: the bare SQL."""
    return [{"role": "assistant", "content": sql.strip()}]


# ---------------------------------------------------------------------------
# Fitting a schema into the context window


def word_stems(text: str) -> list[str]:
    """Lower-case word stems of an identifier or sentence, in order (snake_case and camelCase split)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [w.rstrip("s") or w for w in re.findall(r"[a-z0-9]+", text.lower())]


def table_relevance(schema: Schema, question: str) -> dict[str, float]:
    """How strongly each table's name and columns overlap the question's words."""
    asked = set(word_stems(question))
    scores = {}
    for table in schema.tables:
        score = 2.0 * len(set(word_stems(table.name)) & asked)
        score += sum(len(set(word_stems(c.name)) & asked) for c in table.columns) / max(1, len(table.columns)) ** 0.5
        scores[table.name] = score
    return scores


def likely_tables(schema: Schema, question: str, n: int) -> tuple[Schema, list[str]]:
    """``schema`` with only the ``n`` tables most related to ``question`` (``table_relevance``;
    ties keep the schema's order), in the schema's order, and a warning naming what was left out."""
    if n < 1:
        raise ValueError(f"TEXT2SQL_SCHEMA_TABLES must be 0 (every table) or the number of tables to show, not {n}.")
    if len(schema.tables) <= n:
        return schema, []
    scores = table_relevance(schema, question)
    ranked = sorted(schema.table_names(), key=lambda name: -scores[name])  # stable: ties keep schema order
    dropped = ranked[n:]
    warning = (
        f"The prompt shows the {n} table(s) most related to the question (setting schema_tables); "
        f"left out: " + ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else "")
    )
    return schema.without_tables(set(dropped)), [warning]


def fit_schema(
    schema: Schema,
    question: str,
    count_tokens: Callable[[Messages], int],
    max_tokens: int,
) -> tuple[Schema, list[str]]:
    """``schema`` trimmed until ``build_messages(schema, question)`` fits ``max_tokens``.

    Sample values go first (down to one per column, then none), then whole tables, least
    related to the question first. Returns the schema and human-readable warnings.
    """
    length = count_tokens(build_messages(schema, question))
    if length <= max_tokens:
        return schema, []
    warnings = []
    for keep in (1, 0):
        if all(len(c.samples) <= keep for t in schema.tables for c in t.columns):
            continue
        schema = schema.with_sample_limit(keep)
        length = count_tokens(build_messages(schema, question))
        what = "one example value per column" if keep else "no example values"
        warnings.append(f"The schema is long for this model; the prompt shows {what}.")
        if length <= max_tokens:
            return schema, warnings
    # Estimate each table's share of the prompt once (tokenizing the whole prompt per
    # dropped table would be quadratic on schemas with hundreds of tables).
    empty = count_tokens([{"role": "user", "content": ""}])
    cost = {t.name: count_tokens([{"role": "user", "content": table_ddl(t)}]) - empty for t in schema.tables}
    scores = table_relevance(schema, question)
    dropped = []
    for name in sorted(schema.table_names(), key=lambda n: scores[n]):
        if len(dropped) == len(schema.tables) - 1 or length <= max_tokens:
            break
        dropped.append(name)
        length -= cost[name]
    if dropped:
        schema = schema.without_tables(set(dropped))
        length = count_tokens(build_messages(schema, question))
        warnings.append(
            f"The schema does not fit the model's context ({max_tokens} tokens); "
            f"{len(dropped)} table(s) least related to the question were left out: " + ", ".join(dropped[:10])
            + (" ..." if len(dropped) > 10 else "")
        )
    if length > max_tokens:
        warnings.append(f"The prompt is still {length} tokens, over the {max_tokens}-token budget.")
    return schema, warnings
