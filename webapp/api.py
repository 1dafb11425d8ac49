"""The two programmatic ways in: gradio_client endpoints and a plain REST route.

gradio_client (``register_client_api``, inside the Blocks): ``/generate_sql``, ``/run_sql``,
``/ask``, ``/compare``. Each takes ``schema`` text or a ``database`` file
(``handle_file(path)``); bad input (a wrong type included) raises
``gradio_client.exceptions.AppError`` with a plain message; a refused or failing query is a
result with ``"error"`` set. The three that write SQL take ``mode``: ``"auto"`` (default:
greedy, and best of k only when that fails or returns nothing), ``"greedy"`` or
``"best-of-k"`` (``text2sql.selection``, k from the server's settings), and say in
``"decoding"`` which path answered and why; ``/ask`` and ``/compare`` also return the
``candidates`` a vote chose from.

REST (``create_app``): ``POST /generate_sql`` ``{"schema" | "database", "question", "model"?,
"mode"?, "execute"?}`` -> ``{"sql", "execution_time_ms", "model", "valid", "error",
"decoding", "warnings"}`` (plus ``columns``/``rows``/``truncated`` with ``"execute": true``);
``GET /health`` (503 until the default model can answer), ``GET /models``,
``GET /databases``, OpenAPI at ``/docs`` (Swagger UI served from the swagger-ui-bundle
package: it works offline). Errors are ``{"error": "..."}`` with 400 (bad input), 413 (body
over ``max_request_bytes``), 422 (not the expected JSON: unknown fields included) or 503
(busy, or the model can't answer).

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
from typing import Any, Literal

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from gradio.data_classes import FileData
from pydantic import BaseModel, ConfigDict, Field
from swagger_ui_bundle import swagger_ui_path

from text2sql.errors import ModelUnavailableError, Text2SQLError
from text2sql.pipeline import Database, Generation, run_or_check
from text2sql.registry import default_registry
from text2sql.sandbox import QueryResult
from text2sql.selection import AUTO, MODES, Decoding
from text2sql.settings import get_settings
from webapp.results import result_json
from webapp.service import Busy, Service
from webapp.sources import ExampleDatabases, open_request_source


GENERATION_EVENTS = "model"
"""The concurrency_id every event that runs a model shares."""


# ---------------------------------------------------------------------------
# gradio_client endpoints


def _kind(value) -> str:
    """What a wrongly typed argument is, in words."""
    if isinstance(value, dict) and "path" in value:
        return "a file"
    names = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _text(name: str, value) -> str:
    """A text argument (None: empty); anything else is refused with what it was."""
    if value is None or isinstance(value, str):
        return value or ""
    raise gr.Error(f"'{name}' must be text, not {_kind(value)}.", print_exception=False)


def _file(value) -> str | None:
    """The path of an uploaded ``database`` (gradio_client's ``handle_file``), or None."""
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        return value["path"]
    raise gr.Error(f"'database' must be a SQLite file sent with handle_file(path), not {_kind(value)}.",
                   print_exception=False)


def _decoding(mode) -> Decoding:
    mode = _text("mode", mode) or AUTO
    try:
        return Decoding.from_mode(mode)
    except ValueError as error:
        raise gr.Error(str(error), print_exception=False) from None


def _flag(name: str, value) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise gr.Error(f"'{name}' must be true or false, not {_kind(value)}.", print_exception=False)


def _names(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    raise gr.Error(f"'models' must be a list of model names, not {_kind(value)}.", print_exception=False)


class ClientAPI:
    """The functions behind the four gradio_client endpoints (typed: gr.api builds their schema).
    Gradio passes arguments on as the client sent them, so each is checked here."""

    def __init__(self, service: Service, uploads_root: Path):
        self.service = service
        self.uploads_root = uploads_root

    def _with_database(self, schema, database, use):
        """Call ``use(db)`` on the request's database; an upload's private copy is deleted after."""
        schema, uploaded = _text("schema", schema), _file(database)
        try:
            self.uploads_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.uploads_root, prefix="request-") as private_dir:
                return use(open_request_source(schema, uploaded, private_dir))
        except (Text2SQLError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    def generate_sql(self, schema: str | None = None, question: str | None = None, model: str | None = None,
                     database: FileData | None = None, mode: str = AUTO, execute: bool = False) -> dict:
        """SQL for a question about a schema (text) or a SQLite file: {"sql", "execution_time_ms", "model",
        "valid", "error", "decoding"}; with execute=True also the rows. mode: "auto", "greedy" or "best-of-k"."""
        question, model, decoding = _text("question", question), _text("model", model), _decoding(mode)
        execute = _flag("execute", execute)

        def use(db: Database) -> dict:
            return answer_json(*self.service.ask(db, question, model or None, decoding=decoding), execute)

        return self._with_database(schema, database, use)

    def run_sql(self, schema: str | None = None, sql: str | None = None, database: FileData | None = None) -> dict:
        """Run one read-only query in the sandbox: {"columns", "rows", "truncated", "elapsed_ms", "error"}.
        On a schema without a file the SQL is only checked (no rows)."""
        sql = _text("sql", sql)
        return self._with_database(schema, database, lambda db: result_json(run_or_check(db, sql)))

    def ask(self, schema: str | None = None, question: str | None = None, model: str | None = None,
            database: FileData | None = None, mode: str = AUTO) -> dict:
        """Generate SQL and run it: {"sql", "raw", "chatty", "model", "execution_time_ms", "decoding",
        "candidates", "repair", "columns", "rows", "truncated", "elapsed_ms", "error"}."""
        question, model, decoding = _text("question", question), _text("model", model), _decoding(mode)

        def use(db: Database) -> dict:
            generation, result = self.service.ask(db, question, model or None, decoding=decoding)
            return {**generation_json(generation), **result_json(result)}

        return self._with_database(schema, database, use)

    def compare(
        self, schema: str | None = None, question: str | None = None, models: list[str] | None = None,
        database: FileData | None = None, mode: str = AUTO,
    ) -> dict:
        """Ask 2-4 models the same question: {"results": [one /ask-like dict per model], "agree": bool or null}."""
        question, models, decoding = _text("question", question), _names(models), _decoding(mode)

        def use(db: Database) -> dict:
            comparisons, agree = self.service.compare(db, question, models, decoding=decoding)
            results = [
                {**(generation_json(c.generation) if c.generation else {"sql": None}), **result_json(c.result),
                 "model": c.model}
                for c in comparisons
            ]
            return {"results": results, "agree": agree}

        return self._with_database(schema, database, use)


def generation_json(generation: Generation) -> dict:
    return {
        "sql": generation.sql,
        "raw": generation.raw,
        "chatty": generation.chatty,
        "model": generation.model,
        "execution_time_ms": generation.execution_time_ms,
        "decoding": generation.decoding_json(),
        "warnings": generation.warnings,
        "candidates": [c.as_dict() for c in generation.candidates],
        "repair": generation.repair.as_dict() if generation.repair else None,
    }


def answer_json(generation: Generation, result: QueryResult, execute: bool) -> dict:
    """/generate_sql's answer: the SQL, whether it passed the check (and, on a database with
    rows, ran), and with ``execute`` what it returned."""
    payload = {"sql": generation.sql, "execution_time_ms": generation.execution_time_ms, "model": generation.model,
               "valid": result.ok, "error": result.error, "decoding": generation.decoding_json(),
               "warnings": generation.warnings}
    if execute:
        payload.update({k: v for k, v in result_json(result).items() if k in ("columns", "rows", "truncated")})
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
    model_config = ConfigDict(populate_by_name=True, protected_namespaces=(), extra="forbid", strict=True)

    schema_text: str | None = Field(
        default=None, alias="schema",
        description="CREATE TABLE statements, or 'Table: t' / 'Columns: a, b' lines (or give database)")
    database: str | None = Field(
        default=None, description="One of the app's example databases (GET /databases), instead of schema")
    question: str = Field(description="The question, in plain English")
    model: str | None = Field(default=None, description="A name from GET /models; default: the registry's default")
    mode: Literal[MODES] = Field(
        default=AUTO,
        description="auto: greedy, and best of k only when the greedy SQL fails the check or returns no rows "
                    "(k: the server's auto_k setting); greedy: one answer (fast); best-of-k: k candidates (the "
                    "server's best_of_k setting) checked and run, the answer chosen by a vote over their results",
    )
    execute: bool = Field(
        default=False, description="Also return the rows (columns, rows, truncated). A pasted schema has no rows: "
                                   "its SQL is only checked, so give database to get rows")


class Decoded(BaseModel):
    mode: str = Field(description="The mode asked for")
    k: int | None = None
    temperature: float | None = None
    seed: int | None = None
    answered_by: Literal["greedy", "best-of-k"] = Field(description="The decoding that wrote the answer")
    escalation: str | None = Field(description="auto: why the greedy answer was not kept (null: it was)")


class GenerateSQLResponse(BaseModel):
    sql: str
    execution_time_ms: float
    model: str
    valid: bool = Field(description="The SQL compiles against the schema and (on a database) runs")
    error: str | None = Field(description="Why it is not valid (the check's or the run's words)")
    decoding: Decoded
    warnings: list[str] = Field(description="What to know about the SQL: the schema shown was cut, table or "
                                            "column names the model got wrong were put right (text2sql.sqlcheck)")
    columns: list[str] | None = Field(default=None, description="execute: the result's columns")
    rows: list[list[Any]] | None = Field(default=None, description="execute: the rows (at most max_rows)")
    truncated: bool | None = Field(default=None, description="execute: there were more rows than max_rows")


class ErrorResponse(BaseModel):
    error: str = Field(description="What is wrong, in plain words")


ERRORS = {
    400: {"model": ErrorResponse, "description": "Bad input: unknown model, unreadable schema, empty question"},
    413: {"model": ErrorResponse, "description": "The body is larger than max_request_bytes"},
    422: {"model": ErrorResponse, "description": "The body is not the expected JSON (a field of the wrong type, "
                                                 "a missing or an unknown field)"},
    503: {"model": ErrorResponse, "description": "Busy (queue full), or the model can't answer (still loading, or "
                                                 "its weights can't be loaded)"},
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _problem(problem: dict) -> str:
    """One pydantic/FastAPI validation error in words."""
    where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
    kind = problem.get("type", "")
    if kind == "extra_forbidden":
        known = ", ".join(field.alias or name for name, field in GenerateSQLRequest.model_fields.items())
        return f"unknown field '{where}' (the fields are: {known})"
    if kind == "json_invalid":
        return f"the body is not valid JSON ({(problem.get('ctx') or {}).get('error', 'cannot be parsed')})"
    if kind == "missing":
        return f"{where}: Field required"
    message = str(problem.get("msg"))
    if "input" in problem and kind.endswith("_type"):
        message += f", not {_kind(problem['input'])}"
    return f"{where}: {message}" if where else message


def _validation_message(error: RequestValidationError) -> str:
    return "Bad request: " + "; ".join(_problem(problem) for problem in error.errors())


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


SWAGGER_ASSETS = "/docs-assets"
"""Where Swagger UI's own files are served from (the swagger-ui-bundle package): no CDN."""


def create_app(demo: gr.Blocks, service: Service, examples: ExampleDatabases,
               on_shutdown: Sequence[Callable[[], None]] = (), **mount_options) -> FastAPI:
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
        lifespan=lifespan, docs_url=None, redoc_url=None,
    )
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="text2sql: REST API", swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(error))

    @app.post("/generate_sql", response_model=GenerateSQLResponse, response_model_exclude_unset=True,
              responses=ERRORS)
    def generate_sql(body: GenerateSQLRequest):
        """SQL for a question about a pasted schema or an example database, and whether it is valid."""
        if body.model and body.model not in default_registry().names():
            return _error(400, f"Unknown model {body.model!r}. Available: {', '.join(default_registry().names())}.")
        if (body.schema_text is None) == (body.database is None):
            return _error(400, "Give either schema (CREATE TABLE statements or 'Table:'/'Columns:' lines) or "
                               "database (one of GET /databases), not both.")
        decoding = Decoding.from_mode(body.mode)
        try:
            if body.database is not None:
                database = examples.database(body.database)
                generation, result = service.ask(database, body.question, body.model, decoding=decoding)
            else:
                generation, result = service.ask_for_text(body.schema_text, body.question, body.model, decoding)
        except (Busy, ModelUnavailableError) as error:
            return _error(503, str(error))
        except (Text2SQLError, ValueError) as error:
            return _error(400, str(error))
        return GenerateSQLResponse(**answer_json(generation, result, body.execute))

    @app.get("/health", responses={503: {"description": "The default model can't answer yet (or at all)"}})
    def health():
        """Readiness: 200 once the default model is loaded and can answer, 503 before (or if it can't load)."""
        readiness = service.readiness()
        return JSONResponse(status_code=200 if readiness["model_loaded"] else 503, content=readiness)

    @app.get("/models")
    def models() -> list[dict]:
        registry = default_registry()
        return [
            {
                "name": name,
                "title": spec.title,
                "default": name == registry.default,
                "loaded": name in service.origins,
                "base": spec.base.describe(),
                "adapter": spec.adapter.describe() if spec.adapter else None,
            }
            for name, spec in registry.models.items()
        ]

    @app.get("/databases")
    def databases() -> list[dict]:
        """The example databases POST /generate_sql accepts as "database"."""
        return [{"name": example.name, "title": example.title} for example in examples.examples]

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
