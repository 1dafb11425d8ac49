"""The whole flow in one place: schema -> prompt -> model -> SQL -> sandbox -> result.

    from text2sql.pipeline import Database, ask
    db = Database.from_file("concert_singer.sqlite")
    answer = ask(db, "How many singers do we have?")
    print(answer.generation.sql, answer.result.rows)

``Database`` pairs what the model sees (``schema``) with where SQL may run (``sandbox``):
a SQLite file (optionally privately copied first, for uploads) or a pasted schema
materialised in memory (SQL is then validated with ``EXPLAIN``; there are no rows).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from text2sql.engine import SQLGenerator, load_generator
from text2sql.prompt import build_messages, fit_schema
from text2sql.errors import DatabaseFileError
from text2sql.sandbox import QueryResult, Sandbox, check_database_file, is_wal_mode, private_copy
from text2sql.schema import Schema, parse_schema_text
from text2sql.settings import Settings, get_settings
from text2sql.sqlout import extract_sql


@dataclasses.dataclass
class Database:
    schema: Schema
    sandbox: Sandbox
    has_data: bool
    label: str

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, *, private_dir: str | os.PathLike | None = None, settings: Settings | None = None
    ) -> Database:
        """Open a SQLite file read-only. With ``private_dir`` (uploads) it is checked, copied
        there and opened ``immutable``; the original is not touched again."""
        settings = settings or get_settings()
        check_database_file(path, settings)
        label = Path(path).name
        if private_dir is None:
            return cls._open(Path(path), label, immutable=False, settings=settings)
        copy = private_copy(path, private_dir)
        try:
            return cls._open(copy, label, immutable=True, settings=settings)
        except BaseException:  # a refused upload leaves no copy behind
            copy.unlink(missing_ok=True)
            raise

    @classmethod
    def _open(cls, path: Path, label: str, *, immutable: bool, settings: Settings) -> Database:
        sandbox = Sandbox.from_file(path, immutable=immutable, settings=settings)
        schema = sandbox.read_schema()
        if not schema.tables:
            hint = " It is in WAL mode: its tables may still be in the -wal file; checkpoint it first." if is_wal_mode(path) else ""
            raise DatabaseFileError("The database has no tables." + hint)
        return cls(schema=schema, sandbox=sandbox, has_data=True, label=label)

    @classmethod
    def from_text(cls, text: str, *, settings: Settings | None = None) -> Database:
        """A pasted schema (DDL or ``Table:``/``Columns:``), as an empty in-memory database."""
        schema, ddl = parse_schema_text(text)
        return cls(schema=schema, sandbox=Sandbox.from_ddl(ddl, settings=settings), has_data=False, label="pasted schema")


@dataclasses.dataclass
class Generation:
    sql: str
    raw: str
    chatty: bool
    model: str
    execution_time_ms: float
    """Time spent generating (for a batch: its share of the batch's time)."""
    prompt_tokens: int
    warnings: list[str] = dataclasses.field(default_factory=list)


def generate_sql_batch(generator: SQLGenerator, schema: Schema, questions: list[str], **overrides) -> list[Generation]:
    """SQL for several questions about one schema, in one batched ``generate`` call."""
    prompts, notes, lengths = [], [], []
    for question in questions:
        fitted, warnings = fit_schema(schema, question, generator.count_tokens, generator.max_prompt_tokens)
        messages = build_messages(fitted, question)
        prompts.append(messages)
        notes.append(list(schema.notes) + warnings)
        lengths.append(generator.count_tokens(messages))
    started = time.perf_counter()
    raws = generator.generate(prompts, **overrides)
    share = (time.perf_counter() - started) * 1000 / max(1, len(questions))
    generations = []
    for raw, warnings, length in zip(raws, notes, lengths):
        extracted = extract_sql(raw)
        generations.append(
            Generation(
                sql=extracted.sql,
                raw=raw,
                chatty=extracted.chatty,
                model=generator.spec.name,
                execution_time_ms=round(share, 1),
                prompt_tokens=length,
                warnings=warnings,
            )
        )
    return generations


def generate_sql(schema: Schema, question: str, model: str | None = None) -> Generation:
    """SQL for one question with registry model ``model`` (the default when None)."""
    if not question or not question.strip():
        raise ValueError("The question is empty.")
    return generate_sql_batch(load_generator(model), schema, [question])[0]


@dataclasses.dataclass
class Answer:
    generation: Generation
    result: QueryResult


def run_or_check(database: Database, sql: str) -> QueryResult:
    """Run ``sql`` in the sandbox; on a pasted schema (no rows) only compile it with EXPLAIN."""
    if database.has_data:
        return database.sandbox.run(sql)
    started = time.perf_counter()
    error = database.sandbox.explain(sql)
    return QueryResult(columns=[], rows=[], elapsed_ms=(time.perf_counter() - started) * 1000, error=error)


def ask(database: Database, question: str, model: str | None = None) -> Answer:
    generation = generate_sql(database.schema, question, model)
    if not generation.sql:
        result = QueryResult(columns=[], rows=[], error="The model did not write a SQL query.")
    else:
        result = run_or_check(database, generation.sql)
    return Answer(generation=generation, result=result)
