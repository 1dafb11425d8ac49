"""The two programmatic ways in: gradio_client endpoints and a plain REST route.

gradio_client (``register_client_api``, inside the Blocks): ``/generate_sql``, ``/run_sql``,
``/ask``, ``/compare``. Each takes ``schema`` text or a ``database`` file
(``handle_file(path)``); bad input raises ``gradio_client.exceptions.AppError`` with a
plain message; a refused or failing query is a result with ``"error"`` set. The three that
write SQL take ``mode``: ``"greedy"`` (default) or ``"best-of-k"`` (``text2sql.selection``,
k from the server's ``best_of_k`` setting); ``/ask`` and ``/compare`` then also return the
``candidates``.

REST (``create_app``): ``POST /generate_sql`` ``{"schema", "question", "model"?, "mode"?}`` ->
``{"sql", "execution_time_ms", "model"}`` (the original service's contract), ``GET /health``,
``GET /models``, OpenAPI at ``/docs``. Errors are ``{"error": "..."}`` with 400 (bad
input), 413 (body over ``max_request_bytes``), 422 (malformed JSON) or 503 (busy).

The Gradio UI is mounted into this FastAPI app, after the REST routes (a route added after
a ``/`` mount is never reached). That runs under uvicorn without ``Blocks.launch()``, which
a ZeroGPU Space needs for its startup hook: on ZeroGPU, launch the demo instead and add
the routes with ``demo.app.add_api_route`` after ``launch(prevent_thread_lock=True)``.
"""

# No `from __future__ import annotations`: gr.api reads these functions' type hints at runtime.

import contextlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from gradio.data_classes import FileData
from pydantic import BaseModel, ConfigDict, Field

from text2sql.errors import ModelUnavailableError, Text2SQLError
from text2sql.pipeline import Database, run_or_check
from text2sql.registry import default_registry
from text2sql.selection import GREEDY, Decoding
from text2sql.settings import get_settings
from webapp.results import result_json
from webapp.service import Busy, Service
from webapp.sources import open_request_source


GENERATION_EVENTS = "model"
"""The concurrency_id every event that runs a model shares."""


# ---------------------------------------------------------------------------
# gradio_client endpoints


class ClientAPI:
    """The functions behind the four gradio_client endpoints (typed: gr.api builds their schema)."""

    def __init__(self, service: Service, uploads_root: Path):
        self.service = service
        self.uploads_root = uploads_root

    def _with_database(self, schema: str, database: FileData | None, use):
        """Call ``use(db)`` on the request's database; an upload's private copy is deleted after."""
        uploaded = database["path"] if isinstance(database, dict) else None
        try:
            self.uploads_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.uploads_root, prefix="request-") as private_dir:
                return use(open_request_source(schema, uploaded, private_dir))
        except (Text2SQLError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    def generate_sql(self, schema: str = "", question: str = "", model: str = "", database: FileData | None = None,
                     mode: str = GREEDY) -> dict:
        """SQL for a question about a schema (text) or a SQLite file: {"sql", "execution_time_ms", "model"}.
        mode: "greedy" or "best-of-k"."""

        def use(db: Database) -> dict:
            generation = self.service.generate(db, question, model or None, decoding=Decoding.from_mode(mode))
            return {"sql": generation.sql, "execution_time_ms": generation.execution_time_ms, "model": generation.model}

        return self._with_database(schema, database, use)

    def run_sql(self, schema: str = "", sql: str = "", database: FileData | None = None) -> dict:
        """Run one read-only query in the sandbox: {"columns", "rows", "truncated", "elapsed_ms", "error"}.
        On a schema without a file the SQL is only checked (no rows)."""
        return self._with_database(schema, database, lambda db: result_json(run_or_check(db, sql)))

    def ask(self, schema: str = "", question: str = "", model: str = "", database: FileData | None = None,
            mode: str = GREEDY) -> dict:
        """Generate SQL and run it: {"sql", "raw", "chatty", "model", "execution_time_ms", "columns", "rows",
        "truncated", "elapsed_ms", "error"}; with mode "best-of-k" also "candidates" and "repair"."""

        def use(db: Database) -> dict:
            generation, result = self.service.ask(db, question, model or None, decoding=Decoding.from_mode(mode))
            return {**_generation_json(generation), **result_json(result)}

        return self._with_database(schema, database, use)

    def compare(
        self, schema: str = "", question: str = "", models: list[str] | None = None, database: FileData | None = None,
        mode: str = GREEDY,
    ) -> dict:
        """Ask 2-4 models the same question: {"results": [one /ask-like dict per model], "agree": bool or null}."""

        def use(db: Database) -> dict:
            comparisons, agree = self.service.compare(db, question, models or [], decoding=Decoding.from_mode(mode))
            results = [
                {**(_generation_json(c.generation) if c.generation else {"sql": None}), **result_json(c.result),
                 "model": c.model}
                for c in comparisons
            ]
            return {"results": results, "agree": agree}

        return self._with_database(schema, database, use)


def _generation_json(generation) -> dict:
    payload = {
        "sql": generation.sql,
        "raw": generation.raw,
        "chatty": generation.chatty,
        "model": generation.model,
        "execution_time_ms": generation.execution_time_ms,
    }
    if not generation.decoding.is_greedy:  # the greedy payload stays as documented
        payload["candidates"] = [c.as_dict() for c in generation.candidates]
        payload["repair"] = generation.repair.as_dict() if generation.repair else None
    return payload


def register_client_api(api: ClientAPI, concurrency_limit: int) -> None:
    """Add the four endpoints to the Blocks being built (call inside ``with gr.Blocks()``)."""
    gr.api(api.generate_sql, api_name="generate_sql", concurrency_id=GENERATION_EVENTS,
           concurrency_limit=concurrency_limit)
    gr.api(api.run_sql, api_name="run_sql")
    gr.api(api.ask, api_name="ask", concurrency_id=GENERATION_EVENTS, concurrency_limit=concurrency_limit)
    gr.api(api.compare, api_name="compare", concurrency_id=GENERATION_EVENTS, concurrency_limit=concurrency_limit)


# ---------------------------------------------------------------------------
# REST


class GenerateSQLRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    schema_text: str = Field(alias="schema", description="CREATE TABLE statements, or 'Table: t' / 'Columns: a, b' lines")
    question: str = Field(description="The question, in plain English")
    model: str | None = Field(default=None, description="A name from GET /models; default: the registry's default")
    mode: Literal["greedy", "best-of-k"] = Field(
        default=GREEDY,
        description="greedy: one answer (fast); best-of-k: k candidates (the server's best_of_k setting) checked "
                    "against the schema, the most likely valid one returned",
    )


class GenerateSQLResponse(BaseModel):
    sql: str
    execution_time_ms: float
    model: str


class ErrorResponse(BaseModel):
    error: str = Field(description="What is wrong, in plain words")


ERRORS = {
    400: {"model": ErrorResponse, "description": "Bad input: unknown model, unreadable schema, empty question"},
    413: {"model": ErrorResponse, "description": "The body is larger than max_request_bytes"},
    422: {"model": ErrorResponse, "description": "The body is not the expected JSON"},
    503: {"model": ErrorResponse, "description": "Busy (queue full), or the model's weights can't be loaded"},
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
    return "Bad request: " + "; ".join(problems)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before anything parses
    it (FastAPI and Gradio read JSON bodies whole, in memory). File uploads are exempt: Gradio's
    upload route streams them to disk and enforces ``max_upload_bytes`` itself."""

    EXEMPT = ("/gradio_api/upload",)

    class TooLarge(Exception):
        pass

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.EXEMPT:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        received, over, started = 0, False, False

        async def counted_receive():  # a chunked body declares no length
            nonlocal received, over
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                over = True
                raise self.TooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if over:  # the app turned our exception into its own error page: answer 413 instead
                if not started:
                    started = True
                    await self._refuse(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except self.TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        response = _error(413, f"The request body is larger than the {self.limit:,}-byte limit.")
        await response(scope, receive, send)


def create_app(demo: gr.Blocks, service: Service, on_shutdown: Sequence[Callable[[], None]] = (),
               **mount_options) -> FastAPI:
    """FastAPI with the REST routes, and the Gradio app (UI + client API) mounted at ``/``
    (``mount_options``: theme, css, ... for ``gr.mount_gradio_app``). ``on_shutdown`` runs when
    the server stops (uvicorn ends a SIGTERM by re-raising it, so ``atexit`` would not run)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for cleanup in on_shutdown:
            cleanup()

    app = FastAPI(
        title="text2sql",
        description="Small-model text-to-SQL. The web UI is at /, the gradio_client API under /gradio_api.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(error))

    @app.post("/generate_sql", response_model=GenerateSQLResponse, responses=ERRORS)
    def generate_sql(body: GenerateSQLRequest):
        """SQL for a question about a pasted schema (the original service's contract)."""
        if body.model and body.model not in default_registry().names():
            return _error(400, f"Unknown model {body.model!r}. Available: {', '.join(default_registry().names())}.")
        try:
            generation = service.generate_for_text(
                body.schema_text, body.question, body.model, decoding=Decoding.from_mode(body.mode)
            )
        except (Busy, ModelUnavailableError) as error:
            return _error(503, str(error))
        except (Text2SQLError, ValueError) as error:
            return _error(400, str(error))
        return GenerateSQLResponse(sql=generation.sql, execution_time_ms=generation.execution_time_ms,
                                   model=generation.model)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "default_model": default_registry().default}

    @app.get("/models")
    def models() -> list[dict]:
        registry = default_registry()
        return [
            {
                "name": name,
                "title": spec.title,
                "default": name == registry.default,
                "base": spec.base.describe(),
                "adapter": spec.adapter.describe() if spec.adapter else None,
            }
            for name, spec in registry.models.items()
        ]

    app = gr.mount_gradio_app(
        app, demo, path="/", max_file_size=get_settings().max_upload_bytes, footer_links=["api", "gradio"],
        show_error=False, **mount_options,
    )
    app.add_middleware(BodyLimit, limit=get_settings().max_request_bytes)
    # Gradio checks that a file named in a request was uploaded through it (not any path on this
    # server) only once Blocks.launch() has run, which mount_gradio_app never calls: without
    # this, {"path": "/etc/passwd"} is copied into the cache and opened.
    demo.has_launched = True
    return app
