"""The UI's event handlers: plain methods that take component values and return new ones.

The toolkit's errors (``Text2SQLError``, ``ValueError``) carry messages written for users:
the Ask tab shows them next to what failed (schema summary, note under the SQL, result
status); the Compare tab raises them as ``gr.Error``. Either way the page shows words,
never a traceback. Tests call these methods directly (tests/app/test_handlers.py).

    handlers = Handlers(service, examples, uploads_root, results_dir)
    workspace, sql, note, generated, candidates = handlers.generate(EXAMPLE, "shop", None, "", "How many orders?", "",
                                                                    None, "best-of-k")
    workspace, table, status, csv, bars, line = handlers.run(EXAMPLE, "shop", None, "", sql, workspace, generated)

The SQL box shows the query formatted (``display_sql``); ``generated`` keeps the model's own
text, and that is what runs unless the user edits the box.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
import warnings
from pathlib import Path

import gradio as gr

from text2sql.errors import Text2SQLError
from text2sql.leaderboard import leaderboard_chart, leaderboard_table, load_results
from text2sql.pipeline import Database, run_or_check
from text2sql.registry import default_registry
from text2sql.schema import Schema
from text2sql.pipeline import how_answered
from text2sql.selection import AUTO, BEST_OF_K, GREEDY, Decoding
from webapp.results import (
    candidates_frame,
    chart_of,
    column_widths,
    display_sql,
    plain,
    result_frame,
    result_summary,
    write_csv,
)
from webapp.service import MAX_COMPARED, MIN_COMPARED, Service
from webapp.sources import EXAMPLE, PASTE, UPLOAD, ExampleDatabases, Workspace, open_source


LIVE_INTERVAL_S = 0.25
"""How often the SQL box is refreshed while the model writes."""

NO_RESULTS = """**No evaluation results yet.** The leaderboard reads `results/<run>/metrics.json`. Produce one with

```bash
python -m evaluation.evaluate --model qwen2.5-coder-0.5b
```

(one run per registry model; see `text2sql models`), then press *Reload*."""


def decoding_choices() -> list[tuple[str, str]]:
    """The decoding radio's (label, value) pairs; k comes from the server's settings."""
    return [("Auto", AUTO), ("Fast", GREEDY), (f"Best of {Decoding.best_of().k}", BEST_OF_K)]


def plain_errors(handler):
    """Show the toolkit's own errors as a message on the page (their text is written for users)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (Text2SQLError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def schema_summary(database: Database) -> str:
    schema: Schema = database.schema
    columns = sum(len(t.columns) for t in schema.tables)
    keys = sum(len(t.foreign_keys) for t in schema.tables)
    kind = "rows included" if database.has_data else "no rows: SQL is checked, not run"
    text = (f"**{plain(database.label)}**: {len(schema.tables)} table{'s' * (len(schema.tables) != 1)}, "
            f"{columns} columns, {keys} foreign key{'s' * (keys != 1)} ({kind}).")
    for note in schema.notes:
        text += f"\n\n⚠️ {plain(note)}"
    return text


class Handlers:
    def __init__(self, service: Service, examples: ExampleDatabases, uploads_root: Path, results_dir: Path):
        self.service = service
        self.examples = examples
        self.uploads_root = uploads_root
        self.results_dir = results_dir

    def _workspace(self, workspace: Workspace | None) -> Workspace:
        """The session's workspace, made on its first event."""
        return workspace or Workspace(self.uploads_root)

    def _open(self, workspace, kind, example, upload, text) -> Database:
        return open_source(workspace, self.examples, kind, example=example, upload=upload, text=text)

    # -- Ask tab ---------------------------------------------------------------

    @staticmethod
    def source_controls(kind: str):
        """Show the control for the chosen kind of source, hide the others."""
        return gr.update(visible=kind == EXAMPLE), gr.update(visible=kind == UPLOAD), gr.update(visible=kind == PASTE)

    def show_schema(self, kind, example, upload, text, workspace):
        """(workspace, summary, DDL): what the model will see, whose prompt prefix the default
        model starts computing at once (``Service.warm_up``). Problems are shown in the summary."""
        workspace = self._workspace(workspace)
        try:
            database = self._open(workspace, kind, example, upload, text)
        except Text2SQLError as error:
            return workspace, f"❌ {plain(error)}", ""
        self.service.database_chosen(database)
        return workspace, schema_summary(database), database.schema.to_ddl()

    def choose_database(self, kind, example, upload, text, workspace):
        """``show_schema`` for a newly chosen database, and ``clear_answer``: in one step, so no
        later step of the same event can finish after another event's."""
        return *self.show_schema(kind, example, upload, text, workspace), *self.clear_answer()

    @staticmethod
    def clear_answer():
        """(note, candidates, status, table, csv, bars, line) emptied: a new action's first step,
        so nothing said about the last one stays on the page."""
        hidden = gr.update(value=None, visible=False)
        return "", hidden, "", hidden, gr.update(visible=False), hidden, hidden

    @staticmethod
    def sql_edited():
        """(note, candidates): the user changed the SQL box, so what was said about the model's SQL is stale."""
        return "You edited the SQL: **Run** runs your version.", gr.update(visible=False)

    def generate_live(self, kind, example, upload, text, question, model, workspace, mode=AUTO,
                      progress=gr.Progress(track_tqdm=True)):
        """``generate`` for the UI, as a Gradio generator: the SQL box shows the SQL as the model
        writes it (at most every ``LIVE_INTERVAL_S``), then ``generate``'s answer."""
        written: queue.SimpleQueue = queue.SimpleQueue()
        outcome: list = []

        def work():
            try:
                outcome.append(self.generate(kind, example, upload, text, question, model, workspace, mode,
                                             progress, on_text=written.put))
            except BaseException as error:  # re-raised below, in Gradio's thread
                outcome.append(error)

        # The copied context carries gr.Progress's link to this event into the thread.
        worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(LIVE_INTERVAL_S)
            latest = None
            while not written.empty():
                latest = written.get()
            if latest is not None and worker.is_alive():
                yield gr.skip(), latest, gr.skip(), gr.skip(), gr.skip()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        yield outcome[0]

    def generate(self, kind, example, upload, text, question, model, workspace, mode=AUTO,
                 progress=gr.Progress(track_tqdm=True), on_text=None):
        """(workspace, sql, note, generated, candidates): the model's SQL for the question (shown
        formatted), how it went, the SQL as the model wrote it (the text that runs; "" when there
        is none) and, when a vote chose it, the candidates. A problem is reported in the note,
        and the SQL box keeps what the user had typed."""
        workspace = self._workspace(workspace)
        no_candidates = gr.update(value=None, visible=False)
        try:
            decoding = Decoding.from_mode(mode)
            progress(0.02, desc="Reading the schema…")
            database = self._open(workspace, kind, example, upload, text)
            generation = self.service.generate(database, question, model or None, progress, decoding, on_text)
        except (Text2SQLError, ValueError) as error:
            return workspace, gr.skip(), f"❌ {plain(error)}", "", no_candidates
        candidates = no_candidates
        if generation.candidates:
            frame = candidates_frame(generation.candidates, generation.repair)
            candidates = gr.update(value=frame, column_widths=column_widths(frame), visible=True)
        if not generation.sql:
            note = f"❌ {generation.model} did not write a SQL query. Its answer was:\n\n> {plain(generation.raw[:500])}"
            return workspace, gr.skip(), note, "", candidates
        note = f"Written by **{generation.model}** in {generation.execution_time_ms / 1000:.1f} s."
        if how_answered(generation):
            note += " " + plain(how_answered(generation))
        if generation.chatty:
            note += " The model added text around the SQL; only the SQL is kept."
        for warning in generation.warnings:
            note += f"\n\n⚠️ {plain(warning)}"
        return workspace, display_sql(generation.sql), note, generation.sql, candidates

    def run_generated(self, generated, kind, example, upload, text, workspace):
        """``run`` right after ``generate``: the model's SQL as written, or, when there is none,
        nothing (``clear_answer`` has emptied the result already)."""
        if not generated:
            _, _, status, table, csv, bars, line = self.clear_answer()
            return workspace, table, status, csv, bars, line
        return self.run(kind, example, upload, text, generated, workspace, generated)

    def run(self, kind, example, upload, text, sql, workspace, generated=""):
        """(workspace, table, status, csv, bars, line): run the SQL box's query in the sandbox
        (the model's own text when the box still shows it, formatted), with a chart where the
        result is a category or a date and a number."""
        workspace = self._workspace(workspace)
        _, _, _, hidden, no_csv, no_bars, no_line = self.clear_answer()
        if not (sql or "").strip():
            return workspace, hidden, "Nothing to run yet: ask a question or write a query.", no_csv, no_bars, no_line
        if generated and sql == display_sql(generated):
            sql = generated
        try:
            database = self._open(workspace, kind, example, upload, text)
        except Text2SQLError as error:
            return workspace, hidden, f"❌ {plain(error)}", no_csv, no_bars, no_line
        result = run_or_check(database, sql)
        status = result_summary(result, database.has_data)
        if not result.ok or not database.has_data:
            return workspace, hidden, status, no_csv, no_bars, no_line
        csv = write_csv(result, workspace.folder / "result.csv")
        table = gr.update(value=result_frame(result), visible=True)
        chart = chart_of(result)
        if chart:
            kind_of_chart, frame, x, y = chart
            low, high = min(0, frame[y].min()), max(0, frame[y].max())  # bars start at zero, or they mislead
            # No label above the plot: in its fixed-height block it would push the x axis out of view.
            update = gr.update(value=frame, x=x, y=y, y_lim=[low, high * 1.05 or 1], visible=True, show_label=False)
            no_bars, no_line = (update, no_line) if kind_of_chart == "bar" else (no_bars, update)
        return workspace, table, status, gr.update(value=str(csv), visible=True), no_bars, no_line

    # -- Compare tab -------------------------------------------------------------

    def compare_defaults(self) -> list[str]:
        """The models ticked at first: the default and those with an evaluation run in
        ``results/`` (a model never evaluated, like smollm2-135m, mostly writes no SQL), at most
        MAX_COMPARED; registry order fills up to two."""
        registry = default_registry()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the leaderboard reports broken files
            evaluated = {result.get("model") for result in load_results(self.results_dir)}
        names = [n for n in registry.names() if n == registry.default or n in evaluated][:MAX_COMPARED]
        return names + [n for n in registry.names() if n not in names][: max(0, MIN_COMPARED - len(names))]

    @plain_errors
    def compare(self, kind, example, upload, text, question, models, workspace, mode=AUTO,
                progress=gr.Progress(track_tqdm=True)):
        """(workspace, summary, then column/header/SQL/table for each of MAX_COMPARED slots):
        a model that failed shows as a result too, with what it wrote instead of SQL."""
        workspace = self._workspace(workspace)
        decoding = Decoding.from_mode(mode)
        progress(0.02, desc="Reading the schema…")
        database = self._open(workspace, kind, example, upload, text)
        comparisons, agree = self.service.compare(database, question, models, progress, decoding)
        slots = []
        for i in range(MAX_COMPARED):
            if i >= len(comparisons):
                slots += [gr.update(visible=False)] * 4
                continue
            c = comparisons[i]
            table = result_frame(c.result) if c.result.ok and database.has_data else None
            slots += [
                gr.update(visible=True),
                gr.update(value=comparison_header(c, database.has_data), visible=True),
                gr.update(value=display_sql(c.generation.sql) if c.generation else "",
                          visible=bool(c.generation and c.generation.sql)),
                gr.update(value=table, visible=table is not None),
            ]
        return workspace, agreement_text(comparisons, agree), *slots

    def leaderboard(self):
        """(message, table, chart) from results/*/metrics.json, or how to produce them."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = load_results(self.results_dir)
        problems = "".join(f"\n\n⚠️ {w.message}" for w in caught)
        if not results:
            return NO_RESULTS + problems, gr.update(visible=False), gr.update(visible=False)
        message = f"{len(results)} evaluation run{'s' * (len(results) != 1)} from `{self.results_dir.name}/`." + problems
        return (message, gr.update(value=leaderboard_table(results), visible=True),
                gr.update(value=leaderboard_chart(results), visible=True))

    # -- About tab ------------------------------------------------------------------

    @staticmethod
    def models_markdown() -> str:
        """Every registry model: where its weights come from, with links to the model cards."""
        registry = default_registry()
        lines = ["| model | weights | model card |", "|---|---|---|"]
        for name, spec in registry.models.items():
            default = " (default)" if name == registry.default else ""
            where = spec.base.describe() + (f" + adapter {spec.adapter.describe()}" if spec.adapter else "")
            links = [_card_link(w.repo_id, w.revision) for w in (spec.base, spec.adapter) if w and w.repo_id]
            lines.append(f"| **{name}**{default}<br>{spec.title} | {where} | {' · '.join(links)} |")
        return "\n".join(lines)

    def loaded_models_markdown(self) -> str:
        """Models already in memory and where their weights were actually read from."""
        loaded = [f"* **{name}**: {origin}" for name, origin in self.service.origins.items()]
        return "\n".join(loaded) or "No model is loaded yet: the first question loads one (about 10 s on a CPU)."


def _card_link(repo_id: str, revision: str | None) -> str:
    return f"[{repo_id}](https://huggingface.co/{repo_id}/tree/{revision or 'main'})"


def comparison_header(c, has_data: bool) -> str:
    """A model's column head: its name, time, result or failure, and how it decoded; when it
    wrote no SQL, what it wrote instead."""
    header = f"### {c.model}\n"
    header += f"{c.generation.execution_time_ms / 1000:.1f} s · " if c.generation else ""
    header += result_summary(c.result, has_data)
    if c.generation and not c.generation.sql:
        header += f"\n\nIts answer was:\n\n> {plain(c.generation.raw[:500]) or '(nothing)'}"
    if c.generation and how_answered(c.generation):
        header += "\n\n" + plain(how_answered(c.generation))
    return header


def agreement_text(comparisons, agree: bool | None) -> str:
    """One line on the comparison: agree, disagree, or which ran and which failed (itself a result)."""
    failed = [c.model for c in comparisons if not c.result.ok]
    ran = [c.model for c in comparisons if c.result.ok]
    if agree is None and len(ran) >= 2:
        text = "The models' SQL can't be compared by result here: a pasted schema has no rows."
    elif not ran:
        return f"❌ No model answered: {', '.join(failed)} failed (see each one's column)."
    elif len(ran) == 1:
        return f"Only {ran[0]} answered; {', '.join(failed)} failed (see each one's column)."
    elif agree:
        text = f"✅ The {len(ran)} models that ran return the same rows." if failed else "✅ All models return the same rows."
    else:
        text = "⚠️ The models disagree: their results differ."
    if failed:
        text += f" Failed: {', '.join(failed)}."
    return text
