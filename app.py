"""The text2sql web app: a Gradio UI, a gradio_client API and a REST route, in one process.

    python app.py                     # http://localhost:7860 (UI), /docs (REST), /gradio_api (client)

Tabs: **Ask** (pick an example, upload a SQLite file or paste a schema; ask; edit and run
the SQL; download the result), **Compare models** (one question, 2-4 models side by side,
and the leaderboard from ``results/``), **About**. The default model is the embedded
Qwen2.5-Coder-1.5B on llama.cpp (``TEXT2SQL_DEFAULT_MODEL`` chooses another), so this runs
offline on a CPU. Environment: ``TEXT2SQL_*`` settings
(text2sql/settings.py), ``TEXT2SQL_RESULTS_DIR`` (default ``results/``), ``PORT`` /
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``. See docs/app.md for the APIs.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import gradio_client.utils as client_utils
from gradio.utils import NamedString

from text2sql.registry import default_registry
from text2sql.settings import get_settings
from webapp.api import GENERATION_EVENTS, ClientAPI, create_app, register_client_api
from text2sql.selection import AUTO
from webapp.handlers import Handlers, decoding_choices
from webapp.service import MAX_COMPARED, GenerationLimit, Service
from webapp.sources import EXAMPLE, SOURCES, UPLOAD_TYPES, ExampleDatabases, Workspace


RESULTS_DIR = Path(os.environ.get("TEXT2SQL_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
.gradio-container { max-width: 1280px !important; margin: auto; }
#title h1 { margin-bottom: 0; }
/* The copy/download buttons float over a code box's top right corner: keep text clear of them. */
.sql-box .cm-content { padding-right: 4.5em !important; }
/* A phone stacks the columns: the question first, and a schema that scrolls instead of filling the screen. */
@media (max-width: 700px) {
  #ask-main { flex-direction: column-reverse; }
  #ddl .cm-editor { max-height: 14em !important; overflow: auto; }
}
"""
INTRO = """# text2sql
Ask a SQLite database a question in plain English. A small code model writes the SQL, a
read-only sandbox runs it. Runs on a CPU, offline."""

ABOUT = """## How it works
`schema → prompt → model → SQL → sandbox → result`

1. **Schema.** A SQLite file is read on a read-only connection: tables, typed columns, primary
   and foreign keys, and up to {samples} example values per column. A pasted schema
   (`CREATE TABLE …`, or `Table:` / `Columns:` lines) becomes an empty in-memory database, so SQL
   can be checked but returns no rows.
2. **Prompt.** The schema is written as `CREATE TABLE` statements with the example values as
   comments, then the question: the same prompt the models are fine-tuned on.
3. **Model.** *Fast*: greedy decoding. *Best of {k}*: the greedy answer and {k_minus_1} more drawn at
   temperature {temperature:g}; each is checked against the schema and run in the sandbox, and the
   answer is the most likely query among those returning the most common result (if none runs,
   the model gets SQLite's error once to fix its query). *Auto* (the default): the greedy answer,
   checked the same way; only when it fails or returns no rows, best of {auto_k}. Only the first
   SQL statement is kept.
4. **Sandbox.** The SQL runs on a read-only, locked-down SQLite connection: only `SELECT`, no
   `ATTACH`, stopped after {timeout:g} s, at most {rows:,} rows.

Uploads (up to {upload_mb} MB) are checked (SQLite header, integrity), copied into a private
folder for your session, never modified, and deleted when your session ends.

## Models
{models}

## Loaded now
"""

APIS = """## Use it from code
* **REST:** `POST /generate_sql` with `{"schema": "..." or "database": "shop", "question": "...", "model": "...",
  "mode": "auto" | "greedy" | "best-of-k", "execute": false}` returns `{"sql", "execution_time_ms", "model", "valid",
  "error", "decoding", "warnings"}` (and the rows with `"execute": true`); `GET /health`, `GET /models`, `GET /databases`;
  OpenAPI docs at [/docs](/docs).
* **gradio_client:** `/generate_sql`, `/run_sql`, `/ask`, `/compare` (see *Use via API* at the foot of the page).
"""


class UploadedFile(gr.File):
    """``gr.File`` for the uploaded database's path. Gradio 6.31's ``File.preprocess`` leaves an
    empty ``NamedTemporaryFile(delete=False)`` in its cache on every event that reads the upload,
    never deleted, not even at shutdown; this one only checks the type and passes the path on."""

    is_template = True  # Gradio's own way to subclass a component: the browser still draws a File

    def _process_single_file(self, f):
        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise gr.Error(f"Upload a file ending in {', '.join(self.file_types)}.", print_exception=False)
        return NamedString(f.path)


PRIVATE = {"api_visibility": "private"}
"""For the UI's own events: programs use the four client endpoints (webapp/api.py) instead."""


def decoding_radio(elem_id: str) -> gr.Radio:
    """Auto (greedy; best of k when that fails or returns nothing), Fast (greedy) or Best of k."""
    return gr.Radio(decoding_choices(), value=AUTO, label="Decoding", scale=2, elem_id=elem_id,
                    info="Auto: one answer, and more candidates only when it fails or returns nothing")


def ask_tab(examples: ExampleDatabases, settings) -> SimpleNamespace:
    """The Ask tab's components: the database on the left, question, SQL and result on the right."""
    registry = default_registry()
    ui = SimpleNamespace()
    with gr.Row(equal_height=False, elem_id="ask-main"):
        with gr.Column(scale=2):
            gr.Markdown("### 1. Database")
            ui.kind = gr.Radio(SOURCES, value=EXAMPLE, show_label=False, elem_id="source-kind")
            ui.example = gr.Dropdown(examples.choices(), value=examples.names()[0], label="Example database")
            ui.upload = UploadedFile(file_types=UPLOAD_TYPES, type="filepath", visible=False, elem_id="upload",
                                label=f"SQLite file (.sqlite, .db, .sqlite3; up to {settings.max_upload_bytes // 2**20} MB)")
            ui.schema_text = gr.Textbox(lines=8, visible=False, label="Schema", elem_id="schema-text",
                                        placeholder="CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);"
                                                    "\n\nor\n\nTable: users\nColumns: id, name, age")
            ui.summary = gr.Markdown(elem_id="schema-summary")
            with gr.Accordion("Schema the model sees", open=True):
                ui.ddl = gr.Code(language="sql", interactive=False, show_label=False, max_lines=28, wrap_lines=True,
                                 elem_id="ddl", elem_classes="sql-box")
        with gr.Column(scale=3):
            gr.Markdown("### 2. Question")
            ui.question = gr.Textbox(label="Question", placeholder="e.g. Which customer has placed the most orders?",
                                     elem_id="question")
            with gr.Row(equal_height=True):
                ui.model = gr.Dropdown(registry.names(), value=registry.default, label="Model", scale=3)
                ui.mode = decoding_radio("mode")
                ui.generate = gr.Button("Generate SQL", variant="primary", scale=1, elem_id="generate")
            ui.sql = gr.Code(language="sql", interactive=True, lines=4, elem_id="sql", wrap_lines=True,
                             label="SQL (edit it and press Run)", elem_classes="sql-box")
            ui.note = gr.Markdown(elem_id="note")
            ui.candidates = gr.Dataframe(interactive=False, label="Candidates: the vote picked the SQL above",
                                         visible=False, wrap=True, elem_id="candidates", max_height=300)
            with gr.Row():
                ui.run = gr.Button("Run", variant="secondary", elem_id="run", scale=0, min_width=120)
                ui.csv = gr.DownloadButton("Download CSV", visible=False, scale=0, min_width=160, size="md")
            ui.status = gr.Markdown(elem_id="status")
            ui.table = gr.Dataframe(interactive=False, label="Result", max_height=420, elem_id="result",
                                    buttons=["copy", "fullscreen"], visible=False)
            ui.bars = gr.BarPlot(visible=False, elem_id="result-bars", sort="-y", height=360)
            ui.line = gr.LinePlot(visible=False, elem_id="result-line", height=360)
    ui.examples = gr.Examples(
        [[e.name, q.question] for e in examples.examples for q in e.questions],
        inputs=[ui.example, ui.question],
        label="Example questions (click one to ask it)",
        cache_examples=False,  # on Spaces the default would run the model on every example at startup
        examples_per_page=9,
    )
    ui.source = [ui.kind, ui.example, ui.upload, ui.schema_text]
    ui.answer = [ui.note, ui.candidates, ui.status, ui.table, ui.csv, ui.bars, ui.line]  # Handlers.clear_answer
    return ui


def compare_tab(handlers: Handlers) -> SimpleNamespace:
    """The Compare tab's components: question, models, one column per model, the leaderboard."""
    ui = SimpleNamespace()
    gr.Markdown("Ask several models the same question about the database chosen in the **Ask** tab.")
    ui.database = gr.Markdown()
    with gr.Row(equal_height=True):
        ui.question = gr.Textbox(label="Question", scale=3, elem_id="compare-question")
        ui.models = gr.CheckboxGroup(default_registry().names(), value=handlers.compare_defaults(), scale=2,
                                     label=f"Models (2 to {MAX_COMPARED})", elem_id="compare-models")
        ui.mode = decoding_radio("compare-mode")
        ui.compare = gr.Button("Compare", variant="primary", scale=1)
    ui.agreement = gr.Markdown("Pick 2 to 4 models and press **Compare**.", elem_id="agreement")
    ui.slots = []  # column, header, SQL and result for each model; hidden columns leave no gap
    with gr.Row(equal_height=False, elem_id="compare-results"):
        for i in range(MAX_COMPARED):
            with gr.Column(min_width=280, visible=False, elem_classes="compare-slot") as column:
                ui.slots += [
                    column,
                    gr.Markdown(),
                    gr.Code(language="sql", interactive=False, show_label=False, wrap_lines=True, lines=2,
                            max_lines=12, elem_classes="sql-box", elem_id=f"compare-sql-{i}"),
                    gr.Dataframe(interactive=False, show_label=False, visible=False, max_height=300),
                ]
    gr.Markdown("## Leaderboard (evaluation runs in `results/`)")
    with gr.Row():
        ui.board_message = gr.Markdown()
        ui.reload = gr.Button("Reload", scale=0, min_width=100, size="sm")
    ui.board_table = gr.Dataframe(interactive=False, visible=False, show_label=False)
    ui.board_chart = gr.Plot(visible=False, show_label=False)
    return ui


def wire_ask(demo: gr.Blocks, ui: SimpleNamespace, handlers: Handlers, workspace: gr.State,
             generation_events: dict) -> None:
    generated = gr.State("")  # the model's SQL as written: what runs while the box shows it formatted
    clear = {"fn": handlers.clear_answer, "inputs": None, "outputs": ui.answer, "queue": False, **PRIVATE}
    # A new database makes every note about the last one stale: choose_database clears them.
    choose_database = {"fn": handlers.choose_database, "inputs": [*ui.source, workspace],
                       "outputs": [workspace, ui.summary, ui.ddl, *ui.answer], **PRIVATE}
    ui.kind.change(handlers.source_controls, ui.kind, [ui.example, ui.upload, ui.schema_text], **PRIVATE
                   ).then(**choose_database)
    ui.example.change(**choose_database)
    # A refused upload fails before its handler runs: the old summary is emptied first.
    ui.upload.change(lambda: ("", ""), None, [ui.summary, ui.ddl], queue=False, **PRIVATE).then(**choose_database)
    ui.schema_text.blur(**choose_database)
    demo.load(**choose_database)
    ui.sql.input(handlers.sql_edited, None, [ui.note, ui.candidates], queue=False, trigger_mode="once", **PRIVATE)

    # Generation reports problems in the note rather than raising: Gradio's "Error" badge would
    # cover the SQL box and stop the user from editing it.
    def generate_then_run(trigger) -> None:
        trigger(**clear).then(
            handlers.generate_live, [*ui.source, ui.question, ui.model, workspace, ui.mode],
            [workspace, ui.sql, ui.note, generated, ui.candidates],
            show_progress_on=[ui.note], **generation_events, **PRIVATE,  # not over the SQL being written
        ).then(handlers.run_generated, [generated, *ui.source, workspace],
               [workspace, ui.table, ui.status, ui.csv, ui.bars, ui.line], show_progress_on=[ui.status], **PRIVATE)

    generate_then_run(ui.generate.click)
    generate_then_run(ui.question.submit)
    # A clicked example fills in the database and the question; make the example the source, then ask.
    generate_then_run(ui.examples.load_input_event.then(lambda: EXAMPLE, None, ui.kind, **PRIVATE).then)
    ui.run.click(handlers.run, [*ui.source, ui.sql, workspace, generated],
                 [workspace, ui.table, ui.status, ui.csv, ui.bars, ui.line], show_progress_on=[ui.status], **PRIVATE)


def wire_compare(demo: gr.Blocks, ui: SimpleNamespace, ask: SimpleNamespace, handlers: Handlers,
                 workspace: gr.State, generation_events: dict) -> None:
    ask.summary.change(lambda text: text, ask.summary, ui.database, **PRIVATE)
    for trigger in (ui.compare.click, ui.question.submit):
        trigger(handlers.compare, [*ask.source, ui.question, ui.models, workspace, ui.mode],
                [workspace, ui.agreement, *ui.slots], show_progress_on=[ui.agreement], **generation_events, **PRIVATE)
    for trigger in (demo.load, ui.reload.click):
        trigger(handlers.leaderboard, None, [ui.board_message, ui.board_table, ui.board_chart], **PRIVATE)


def build_demo(handlers: Handlers, client_api: ClientAPI, examples: ExampleDatabases) -> gr.Blocks:
    """The whole UI, the client API endpoints and the queue (sized from the settings)."""
    settings = get_settings()
    generation_events = {"concurrency_id": GENERATION_EVENTS, "concurrency_limit": settings.generation_concurrency}
    retention = settings.upload_retention_s
    with gr.Blocks(title="text2sql: ask a SQLite database in plain English", delete_cache=(retention, retention)) as demo:
        # First, so the four endpoints get their names (a private UI event would take "/compare").
        register_client_api(client_api, settings.generation_concurrency)
        workspace = gr.State(None, delete_callback=Workspace.close_if_any)
        gr.Markdown(INTRO, elem_id="title")
        with gr.Tabs():
            with gr.Tab("Ask", id="ask"):
                ask = ask_tab(examples, settings)
            with gr.Tab("Compare models", id="compare"):
                compare = compare_tab(handlers)
            with gr.Tab("About", id="about") as about:
                gr.Markdown(ABOUT.format(
                    samples=settings.sample_values, timeout=settings.query_timeout_s, rows=settings.max_rows,
                    k=settings.best_of_k, k_minus_1=settings.best_of_k - 1, temperature=settings.sampling_temperature,
                    auto_k=settings.auto_k,
                    upload_mb=settings.max_upload_bytes // 2**20, models=handlers.models_markdown(),
                ))
                loaded = gr.Markdown(handlers.loaded_models_markdown())
                gr.Markdown(APIS)
        wire_ask(demo, ask, handlers, workspace, generation_events)
        wire_compare(demo, compare, ask, handlers, workspace, generation_events)
        about.select(handlers.loaded_models_markdown, None, loaded, **PRIVATE)
    # Events that only read schemas or run SQL may overlap, as many as there are query workers.
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=max(1, settings.query_workers))
    return demo


def create(results_dir: Path = RESULTS_DIR, work_dir: Path | None = None):
    """(demo, app, service): the Gradio Blocks, the FastAPI app serving it with the REST routes,
    and the service both use.
    ``work_dir`` holds the built example databases and users' private copies of uploads
    (default: a fresh temporary folder, deleted when the process exits)."""
    cleanups = []
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="text2sql-app-"))
        cleanups.append(functools.partial(shutil.rmtree, work_dir, ignore_errors=True))
        atexit.register(cleanups[0])  # when no server ran (e.g. `import app`)
    examples = ExampleDatabases(work_dir / "examples")
    service = Service(limit=GenerationLimit.from_settings())
    handlers = Handlers(service, examples, work_dir / "uploads", Path(results_dir))
    demo = build_demo(handlers, ClientAPI(service, work_dir / "uploads"), examples)
    return demo, create_app(demo, service, examples, on_shutdown=cleanups, theme=THEME, css=CSS), service


demo, app, service = create()


def quiet_console() -> None:
    """Keep the server's console to what matters. Dropped: notices about things this app never
    uses (bitsandbytes' missing 4-bit CPU kernels, imported through peft), deprecation warnings
    raised inside transformers and peft, weight-loading progress bars and uvicorn's start-up
    chatter. Errors still print."""
    import logging
    import warnings

    import huggingface_hub
    import transformers

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)(\.|$)")


def announce_when_ready(url: str) -> None:
    """Load the default model, then print the one line that says the app can answer (or why not)."""
    seconds = service.warm_up()
    if seconds is None:
        print(f"text2sql at {url} can't answer: {service.load_error} (/health says 503)", flush=True)
    else:
        name = service.readiness()["default_model"]
        print(f"text2sql is ready at {url} ({name} loaded in {seconds:.0f} s)", flush=True)


def main() -> None:
    """Serve the app with uvicorn (benchmarks/serve.py calls this too, after registering a fake model)."""
    import uvicorn

    quiet_console()
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    port = int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860)
    url = f"http://{'localhost' if host == '0.0.0.0' else host}:{port}/"
    # Load the default model in the background, so the first question doesn't wait for it.
    threading.Thread(target=announce_when_ready, args=(url,), daemon=True, name="warm-up").start()
    # Without a grace limit one open browser tab holds a SIGTERM off until SIGKILL, and the
    # uploads' private copies are never deleted.
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=get_settings().shutdown_grace_s,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
