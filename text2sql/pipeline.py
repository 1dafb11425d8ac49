"""The whole flow in one place: schema -> prompt -> model -> SQL -> sandbox -> result.

    from text2sql.pipeline import Database, ask
    db = Database.from_file("concert_singer.sqlite")
    answer = ask(db, "How many singers do we have?")
    print(answer.generation.sql, answer.result.rows)
    answer = ask(db, "How many singers do we have?", decoding=Decoding.best_of(4))   # text2sql.selection
    answer = ask(db, "How many singers do we have?", decoding=Decoding.auto())      # greedy; best of k if needed
    print(how_answered(answer.generation))

The model's SQL goes to the sandbox with its table and column names put right where exactly one
fix exists (``text2sql.sqlcheck.fix_column_names``: a column qualified with the wrong table of
the query, a column of a table one foreign key away, a near-miss spelling, a table named in the
other number); the answer's warnings say what changed.

``Database`` pairs what the model sees (``schema``) with where SQL may run (``sandbox``):
a SQLite file (optionally privately copied first, for uploads) or a pasted schema
materialised in memory (SQL is then validated with ``EXPLAIN``; there are no rows).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from collections.abc import Callable
from pathlib import Path

from text2sql.engine import SQLGenerator, load_generator
from text2sql.errors import DatabaseFileError
from text2sql.prompt import Messages, build_messages, fit_schema, likely_tables
from text2sql.sandbox import QueryResult, Sandbox, check_database_file, is_wal_mode, private_copy
from text2sql.schema import Schema, parse_schema_text
from text2sql.selection import (
    AUTO,
    BEST_OF_K,
    GREEDY,
    Candidate,
    Decoding,
    check_candidates,
    escalation_reason,
    how_chosen,
    most_likely_failure,
    repair_prompt,
    select,
)
from text2sql.settings import Settings, get_settings
from text2sql.sqlcheck import fixed_if_enabled, fixes_note
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
    decoding: Decoding = Decoding()
    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    """Best-of-k: every candidate, checked (``votes``, ``error``), in the order drawn."""
    repair: Candidate | None = None
    """Best-of-k: the repair round's candidate, when no candidate ran."""
    escalation: str | None = None
    """Auto: why the greedy answer was not kept and best-of-k answered (None: it was kept)."""

    @property
    def answered_by(self) -> str:
        """The decoding that wrote the answer: ``greedy``, or ``best-of-k`` (asked for, or auto's escalation)."""
        return BEST_OF_K if self.candidates else GREEDY

    def decoding_json(self) -> dict:
        """The decoding asked for, the one that answered, and (auto) why it escalated, for JSON."""
        return {**self.decoding.as_dict(), "answered_by": self.answered_by, "escalation": self.escalation}


@dataclasses.dataclass
class Answer:
    generation: Generation
    result: QueryResult


@dataclasses.dataclass
class _Prompt:
    schema: Schema
    """The schema as the prompt shows it (trimmed to fit the model's context)."""
    messages: Messages
    warnings: list[str]
    tokens: int


def _streaming(method: Callable, on_text: Callable[[str], None] | None) -> dict:
    """``{"on_text": on_text}`` for a generator ``method`` that can report its text as it writes
    (``TransformersGenerator``); nothing for one that can't, or when no one listens."""
    if on_text is None or "on_text" not in inspect.signature(method).parameters:
        return {}
    return {"on_text": on_text}


def _prompts(generator: SQLGenerator, schema: Schema, questions: list[str]) -> list[_Prompt]:
    shown_tables = get_settings().schema_tables
    prompts = []
    for question in questions:
        shown, trimmed = likely_tables(schema, question, shown_tables) if shown_tables else (schema, [])
        fitted, warnings = fit_schema(shown, question, generator.count_tokens, generator.max_prompt_tokens)
        messages = build_messages(fitted, question)
        prompts.append(
            _Prompt(fitted, messages, list(schema.notes) + trimmed + warnings, generator.count_tokens(messages))
        )
    return prompts


def generate_sql_batch(
    generator: SQLGenerator, schema: Schema, questions: list[str], on_text: Callable[[str], None] | None = None,
    **overrides,
) -> list[Generation]:
    """SQL for several questions about one schema, in one batched ``generate`` call
    (``on_text`` hears the first one's text as it is written, where the generator can tell)."""
    prompts = _prompts(generator, schema, questions)
    started = time.perf_counter()
    raws = generator.generate([p.messages for p in prompts], **_streaming(generator.generate, on_text), **overrides)
    share = (time.perf_counter() - started) * 1000 / max(1, len(questions))
    generations = []
    for raw, prompt in zip(raws, prompts):
        extracted = extract_sql(raw)
        sql, fixes = fixed_if_enabled(extracted.sql, schema)
        generations.append(
            Generation(
                sql=sql,
                raw=raw,
                chatty=extracted.chatty,
                model=generator.spec.name,
                execution_time_ms=round(share, 1),
                prompt_tokens=prompt.tokens,
                warnings=prompt.warnings + ([fixes_note(fixes)] if fixes else []),
            )
        )
    return generations


Stage = Callable[..., None]
"""Hears what the pipeline is doing: ``stage("checking candidates", (3, 8))``; the step, when
given, is how far through a known number of steps it is."""


def _quietly(desc: str, step: tuple[int, int] | None = None) -> None:
    pass


def answer_batch(
    generator: SQLGenerator, database: Database, questions: list[str], decoding: Decoding = Decoding(),
    stage: Stage = _quietly, on_text: Callable[[str], None] | None = None,
) -> list[Answer]:
    """SQL for several questions about one database, and what each returns.

    Greedy: one batched ``generate``, then each query runs. Best-of-k
    (``text2sql.selection``): ``decoding.k`` candidates per question from one batched
    ``sample``, then ``select_answers``. Auto: greedy, then best-of-k for the questions whose
    answer fails or returns nothing. ``execution_time_ms`` is each question's share of the
    whole time, checks and repair included. ``stage`` hears each step as it starts, ``on_text``
    the first question's SQL as it is written (greedy, or the first of the candidates).
    """
    if decoding.is_greedy:
        stage("writing SQL")
        generations = generate_sql_batch(generator, database.schema, questions, on_text)
        stage("running it")
        return [Answer(g, check_answer(database, g.sql)) for g in generations]
    started = time.perf_counter()
    prompts = _prompts(generator, database.schema, questions)
    if decoding.mode == AUTO:
        answers = _auto_answers(generator, database, questions, prompts, decoding, stage, on_text)
    else:
        answers = _best_of_k_answers(generator, database, questions, prompts, decoding, stage, on_text)
    share = round((time.perf_counter() - started) * 1000 / max(1, len(questions)), 1)
    for answer in answers:
        answer.generation.execution_time_ms = share
    return answers


def _best_of_k_answers(generator, database, questions, prompts, decoding, stage: Stage = _quietly,
                       on_text=None) -> list[Answer]:
    stage(f"writing {decoding.k} candidates")
    samples = generator.sample([p.messages for p in prompts], decoding.k, decoding.temperature, decoding.seed,
                               **_streaming(generator.sample, on_text))
    candidates = [[Candidate.from_sample(s) for s in per_question] for per_question in samples]
    return select_answers(generator, database, questions, candidates, decoding, prompts, stage=stage)


def _auto_answers(generator, database, questions, prompts, decoding, stage: Stage = _quietly,
                  on_text=None) -> list[Answer]:
    """The greedy answer where it passes the checks and returns something; best-of-k (the
    greedy answer among its k candidates, one batched call) for the questions where it doesn't.
    The greedy answer runs under the query time limit, as it would in greedy mode."""
    stage("writing SQL")
    samples = generator.sample([p.messages for p in prompts], 1, 0.0, 0, **_streaming(generator.sample, on_text))
    greedy = [Candidate.from_sample(s[0]) for s in samples]
    stage("checking and running it")
    answers: list[Answer | None] = []
    for prompt, first in zip(prompts, greedy):
        check_candidates([first], prompt.schema, database.sandbox, database.has_data, get_settings().query_timeout_s)
        kept = escalation_reason(first, database.has_data) is None
        answers.append(Answer(_generation(generator, prompt, first, decoding), first.result) if kept else None)
    escalated = [i for i, answer in enumerate(answers) if answer is None]
    if escalated:
        if len(questions) == 1:
            stage(f"the first answer {escalation_reason(greedy[0], database.has_data)}")
        chosen = _best_of_k_answers(generator, database, [questions[i] for i in escalated],
                                    [prompts[i] for i in escalated], decoding, stage, on_text)
        for i, answer in zip(escalated, chosen):
            answer.generation.escalation = escalation_reason(greedy[i], database.has_data)
            answers[i] = answer
    return answers


def _generation(generator, prompt: _Prompt, final: Candidate, decoding: Decoding, candidates=(), repair=None):
    return Generation(
        sql=final.sql, raw=final.raw, chatty=final.chatty, model=generator.spec.name, execution_time_ms=0.0,
        prompt_tokens=prompt.tokens, warnings=prompt.warnings + ([fixes_note(final.fixes)] if final.fixes else []),
        decoding=decoding, candidates=list(candidates),
        repair=repair,
    )


def select_answers(
    generator: SQLGenerator,
    database: Database,
    questions: list[str],
    candidates: list[list[Candidate]],
    decoding: Decoding,
    prompts: list[_Prompt] | None = None,
    drawn_repairs: list[Candidate | None] | None = None,
    *,
    stage: Stage = _quietly,
) -> list[Answer]:
    """Each question's answer from its candidates: every candidate checked in the sandbox, the
    pick of the selection rule (``text2sql.selection.select``), or, where none ran, one repair
    round (one batched call for all of them; ``drawn_repairs``: repairs an earlier run drew
    and chose for these candidates, checked again instead of drawing new ones)."""
    prompts = prompts or _prompts(generator, database.schema, questions)
    one_question = len(questions) == 1  # a batch's progress is its own (evaluate's bar)
    on_checked = (lambda i, n: stage("checking candidates", (i, n))) if one_question else None
    for prompt, per_question in zip(prompts, candidates):
        check_candidates(per_question, prompt.schema, database.sandbox, database.has_data, on_checked=on_checked)
    chosen = [select(c, q, p.schema) for c, q, p in zip(candidates, questions, prompts)]
    if drawn_repairs is None:
        if None in chosen:
            stage("no candidate ran: the model is repairing its query")
        repairs = _repair(generator, database, questions, prompts, candidates, chosen, decoding)
    else:
        repairs = _recheck(database, prompts, chosen, drawn_repairs)
    answers = []
    for prompt, per_question, pick, repair in zip(prompts, candidates, chosen, repairs):
        final = pick or (repair if repair and repair.sql else most_likely_failure(per_question))
        generation = _generation(generator, prompt, final, decoding, per_question, repair)
        result = final.result if final.ran else QueryResult(columns=[], rows=[], error=final.error)
        answers.append(Answer(generation, result))
    return answers


def _repair(generator, database, questions, prompts, candidates, chosen, decoding) -> list[Candidate | None]:
    """Where no candidate ran: ``decoding.k`` repairs drawn like the candidates (one batched
    call for all such questions), checked, and chosen by the same rule; the most likely repair
    when none runs. Sampled, not only greedy: given its failed query back, a model tends to
    write that query again (the fine-tuned 0.5B mostly did: results/*-best-of-8/ repairs)."""
    failed = [i for i, pick in enumerate(chosen) if pick is None]
    repairs: list[Candidate | None] = [None] * len(questions)
    if not failed:
        return repairs
    messages = [repair_prompt(prompts[i].schema, questions[i], most_likely_failure(candidates[i])) for i in failed]
    drawn = generator.sample(messages, decoding.k, decoding.temperature, decoding.seed)
    for i, samples in zip(failed, drawn):
        attempts = [Candidate.from_sample(sample) for sample in samples]
        check_candidates(attempts, prompts[i].schema, database.sandbox, database.has_data)
        repairs[i] = select(attempts, questions[i], prompts[i].schema) or max(attempts, key=lambda c: c.logprob)
    return repairs


def _recheck(database, prompts, chosen, drawn: list[Candidate | None]) -> list[Candidate | None]:
    """The repairs already drawn, checked again, where no candidate ran (None elsewhere)."""
    repairs: list[Candidate | None] = [None] * len(chosen)
    for i, pick in enumerate(chosen):
        if pick is None and drawn[i] is not None:
            check_candidates([drawn[i]], prompts[i].schema, database.sandbox, database.has_data)
            repairs[i] = drawn[i]
    return repairs


def how_answered(generation: Generation) -> str:
    """One sentence on which decoding wrote the answer and why ("" for plain greedy)."""
    decoding = generation.decoding
    if decoding.mode == GREEDY:
        return ""
    chosen = how_chosen(decoding.best_of_k, generation.candidates, generation.repair) if generation.candidates else ""
    if decoding.mode == BEST_OF_K:
        return chosen
    if generation.escalation is None:
        return "Auto: the greedy answer passed every check, so it was kept; no other candidates were drawn."
    return f"Auto: the greedy answer {generation.escalation}, so {generation.decoding.k} candidates were voted on. {chosen}"


def check_answer(database: Database, sql: str) -> QueryResult:
    """A written query's verdict: ``run_or_check`` (on a pasted schema, EXPLAIN: the check
    against the schema), or why there is nothing to run."""
    if not sql:
        return QueryResult(columns=[], rows=[], error="The model did not write a SQL query.")
    return run_or_check(database, sql)


def generate_sql(schema: Schema, question: str, model: str | None = None) -> Generation:
    """SQL for one question with registry model ``model`` (the default when None)."""
    if not question or not question.strip():
        raise ValueError("The question is empty.")
    return generate_sql_batch(load_generator(model), schema, [question])[0]


def run_or_check(database: Database, sql: str) -> QueryResult:
    """Run ``sql`` in the sandbox; on a pasted schema (no rows) only compile it with EXPLAIN."""
    if database.has_data:
        return database.sandbox.run(sql)
    started = time.perf_counter()
    error = database.sandbox.explain(sql)
    return QueryResult(columns=[], rows=[], elapsed_ms=(time.perf_counter() - started) * 1000, error=error)


def warm_up(database: Database, model: str | None = None) -> None:
    """Compute ``database``'s prompt prefix (system prompt + schema) with ``model`` (None: the
    default) before the first question, which then computes only its own tokens. A schema too
    long for the prompt, or cut to each question's tables (setting ``schema_tables``), is
    trimmed per question, so it has no common prefix to warm."""
    if 0 < get_settings().schema_tables < len(database.schema.tables):
        return
    generator = load_generator(model)
    messages = build_messages(database.schema, "")
    if generator.count_tokens(messages) < generator.max_prompt_tokens:
        generator.prefill(messages)


def ask(database: Database, question: str, model: str | None = None, decoding: Decoding = Decoding()) -> Answer:
    """The SQL for ``question`` (model None: the registry's default) and what it returns."""
    if not question or not question.strip():
        raise ValueError("The question is empty.")
    return answer_batch(load_generator(model), database, [question], decoding)[0]
