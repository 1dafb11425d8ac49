"""What the UI, the client API and REST all do, in one place: generate SQL under one shared
limit, run it in the sandbox, compare models.

Gradio's queue already limits its own events (``concurrency_id="model"``), but REST
requests don't pass through it; ``GenerationLimit`` is the one limit all three share.

    service = Service(limit=GenerationLimit.from_settings())
    generation = service.generate(database, "How many users?", model=None)
    generation = service.generate(database, "How many users?", decoding=Decoding.best_of())   # text2sql.selection
    generation, verdict = service.ask(database, "How many users?", decoding=Decoding.auto())
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

from text2sql.engine import load_generator
from text2sql.errors import Text2SQLError
from text2sql.pipeline import Database, Generation, answer_batch, check_answer, generate_sql_batch, warm_up
from text2sql.registry import default_registry
from text2sql.sandbox import QueryResult
from text2sql.selection import Decoding
from text2sql.settings import get_settings

from webapp.results import results_agree
from webapp.sources import check_schema_text


MIN_COMPARED, MAX_COMPARED = 2, 4


class Busy(Text2SQLError):
    """Too many requests are already waiting for a model (REST answers 503)."""


class GenerationLimit:
    """At most ``running`` generations at once and ``waiting`` more queued; past that, ``Busy``."""

    def __init__(self, running: int, waiting: int):
        self._running = threading.Semaphore(running)
        self._admitted = threading.Semaphore(running + waiting)
        self.waiting = waiting

    @classmethod
    def from_settings(cls) -> GenerationLimit:
        settings = get_settings()
        return cls(settings.generation_concurrency, settings.queue_size)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._admitted.acquire(blocking=False):
            raise Busy(f"The server is busy ({self.waiting} requests are waiting for a model). Try again in a minute.")
        try:
            with self._running:
                yield
        finally:
            self._admitted.release()


def check_question(question: str) -> None:
    if not (question or "").strip():
        raise ValueError("Type a question first.")
    limit = get_settings().max_question_chars
    if len(question) > limit:
        raise ValueError(f"The question is {len(question):,} characters long; the limit is {limit:,}.")


def _no_progress(progress: float | tuple[int, int] | None, desc: str = "") -> None:
    pass


def model_names() -> list[str]:
    return default_registry().names()


@dataclasses.dataclass
class Comparison:
    model: str
    generation: Generation | None
    result: QueryResult
    """The query's result; a model that failed to answer has an empty result with the error."""


@dataclasses.dataclass
class Service:
    limit: GenerationLimit
    origins: dict[str, str] = dataclasses.field(default_factory=dict)
    """Each model used so far -> where its weights were read from (the About tab shows it)."""
    load_error: str | None = None
    """Why the default model could not be loaded at startup (``warm_up``), if it couldn't."""

    def generate(
        self, database: Database, question: str, model: str | None = None, progress=_no_progress,
        decoding: Decoding = Decoding(), on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """SQL for ``question`` (model None or "": the registry's default). Best-of-k also runs
        its candidates in ``database``'s sandbox to choose among them (auto when needed).
        ``progress(step, desc=...)``, called as ``gr.Progress`` is, hears each stage: loading the
        model (once per process), writing, checking candidates ``(i, k)``, repairing; ``step``
        is None where no fraction is known. ``on_text`` hears the SQL as the model writes it
        (where its backend can tell)."""
        check_question(question)
        with self.limit.slot():
            return self._generate(database, question, model, progress, decoding, on_text)

    def ask_for_text(
        self, text: str, question: str, model: str | None = None, decoding: Decoding = Decoding()
    ) -> tuple[Generation, QueryResult]:
        """``ask`` for pasted schema text (REST), parsed inside the limit too: parsing 200,000
        characters of DDL takes seconds of CPU, and REST has no other queue. The result is
        the SQL's check against the schema (there are no rows)."""
        check_question(question)
        check_schema_text(text)
        with self.limit.slot():
            database = Database.from_text(text)
            generation = self._generate(database, question, model, _no_progress, decoding)
        return generation, check_answer(database, generation.sql)

    def _generate(self, database: Database, question: str, model: str | None, progress, decoding: Decoding,
                  on_text: Callable[[str], None] | None = None) -> Generation:
        name = model or default_registry().default
        if name not in self.origins:
            progress(None, desc=f"Loading {name} (once: its first question loads it)…")
        generator = self.load(name)

        def stage(desc: str, step: tuple[int, int] | None = None) -> None:
            progress(step, desc=f"{name}: {desc}…")  # no bar where no fraction is known

        if decoding.is_greedy:
            stage("writing SQL")
            return generate_sql_batch(generator, database.schema, [question], on_text)[0]
        return answer_batch(generator, database, [question], decoding, stage, on_text)[0].generation

    def load(self, model: str | None = None):
        """The model's generator (loaded once per process), noting where its weights came from."""
        generator = load_generator(model or None)
        self.origins[generator.spec.name] = generator.origin
        return generator

    def database_chosen(self, database: Database, model: str | None = None) -> threading.Thread | None:
        """Start computing ``database``'s prompt prefix (system prompt + schema) with the model
        (default: the registry's default) in the background, while the visitor types, so the
        first question is answered warm (``text2sql.pipeline.warm_up``). Only a model already
        loaded is warmed: choosing a database never loads one. Returns the thread, if one started."""
        name = model or default_registry().default
        if name not in self.origins:
            return None
        thread = threading.Thread(target=self._prefill, args=(database, name), daemon=True, name="prefill")
        thread.start()
        return thread

    @staticmethod
    def _prefill(database: Database, model: str) -> None:
        try:
            warm_up(database, model)
        except Text2SQLError:  # the question will say what is wrong
            pass

    def warm_up(self) -> float | None:
        """Load the default model now (at startup, so the first question doesn't wait); the
        seconds it took, or None when it can't be loaded (``load_error`` says why)."""
        started = time.perf_counter()
        try:
            self.load()
        except Text2SQLError as error:
            self.load_error = str(error)
            return None
        return time.perf_counter() - started

    def readiness(self) -> dict:
        """Whether the default model can answer (``/health``): loaded, or why not yet."""
        default = default_registry().default
        loaded = default in self.origins
        status = "ok" if loaded else "failed" if self.load_error else "loading"
        return {"status": status, "model_loaded": loaded, "default_model": default, "error": self.load_error}

    def ask(
        self, database: Database, question: str, model: str | None = None, progress=_no_progress,
        decoding: Decoding = Decoding(),
    ):
        """(generation, result): the SQL for ``question`` and what it returns (or why not)."""
        generation = self.generate(database, question, model, progress, decoding)
        return generation, check_answer(database, generation.sql)

    def compare(
        self, database: Database, question: str, models: list[str], progress=_no_progress,
        decoding: Decoding = Decoding(),
    ) -> tuple[list[Comparison], bool | None]:
        """Each model's SQL and result for one question, and whether the results agree
        (None when fewer than two ran, or a pasted schema has no rows to compare)."""
        models = list(dict.fromkeys(models or []))
        if not MIN_COMPARED <= len(models) <= MAX_COMPARED:
            raise ValueError(f"Pick {MIN_COMPARED} to {MAX_COMPARED} models to compare.")
        check_question(question)
        comparisons = []
        for i, model in enumerate(models):
            step = lambda _, desc="": progress((i, len(models)), desc=desc)  # noqa: E731  (model i of n)
            try:
                generation, result = self.ask(database, question, model, step, decoding)
            except Busy:
                raise
            except Text2SQLError as error:  # this model can't answer (e.g. weights missing); the others still can
                generation, result = None, QueryResult(columns=[], rows=[], error=str(error))
            comparisons.append(Comparison(model=model, generation=generation, result=result))
        ran = [c.result for c in comparisons if c.result.ok]
        agree = results_agree(ran) if database.has_data and len(ran) >= 2 else None
        return comparisons, agree
