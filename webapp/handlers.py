"""The UI's event handlers: plain methods that take component values and return new ones.

The toolkit's errors (``Text2SQLError``, ``ValueError``) carry messages written for users:
the Ask tab shows them next to what failed (schema summary, note under the SQL, result
status); the Compare tab raises them as ``gr.Error``. Either way the page shows words,
never a traceback. Tests call these methods directly (tests/app/test_handlers.py).

    handlers = Handlers(service, examples, uploads_root, results_dir)
    workspace, sql, note, generated, candidates = handlers.generate(EXAMPLE, "shop", None, "", "How many orders?", "",
                                                                    None, "best-of-k")
"""

from __future__ import annotations

import functools
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
from webapp.results import candidates_frame, plain, result_frame, result_summary, write_csv
from webapp.service import MAX_COMPARED, Service
from webapp.sources import EXAMPLE, PASTE, UPLOAD, ExampleDatabases, Workspace, open_source


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
        """(workspace, summary, DDL): what the model will see. Problems are shown in the summary."""
        workspace = self._workspace(workspace)
        try:
            database = self._open(workspace, kind, example, upload, text)
        except Text2SQLError as error:
            return workspace, f"❌ {plain(error)}", ""
        return workspace, schema_summary(database), database.schema.to_ddl()

    def generate(self, kind, example, upload, text, question, model, workspace, mode=AUTO,
                 progress=gr.Progress(track_tqdm=True)):
        """(workspace, sql, note, generated, candidates): the model's SQL for the question, how it
        went, and (best of k) the candidates it was chosen from. A problem is reported in the
        note, and the SQL box keeps what the user had typed."""
        workspace = self._workspace(workspace)
        no_candidates = gr.update(value=None, visible=False)
        try:
            decoding = Decoding.from_mode(mode)
            database = self._open(workspace, kind, example, upload, text)
            generation = self.service.generate(database, question, model or None, progress, decoding)
        except (Text2SQLError, ValueError) as error:
            return workspace, gr.skip(), f"❌ {plain(error)}", False, no_candidates
        candidates = no_candidates
        if generation.candidates:
            candidates = gr.update(value=candidates_frame(generation.candidates, generation.repair), visible=True)
        if not generation.sql:
            note = f"❌ {generation.model} did not write a SQL query. Its answer was:\n\n> {plain(generation.raw[:500])}"
            return workspace, gr.skip(), note, False, candidates
        note = f"Written by **{generation.model}** in {generation.execution_time_ms / 1000:.1f} s."
        if how_answered(generation):
            note += " " + plain(how_answered(generation))
        if generation.chatty:
            note += " The model added text around the SQL; only the SQL is kept."
        for warning in generation.warnings:
            note += f"\n\n⚠️ {plain(warning)}"
        return workspace, generation.sql, note, True, candidates

    def run_generated(self, generated, kind, example, upload, text, sql, workspace):
        """``run`` right after ``generate``: the new SQL, or, when there is none, clear the old result."""
        if not generated:
            return workspace, gr.update(value=None, visible=False), "", gr.update(visible=False)
        return self.run(kind, example, upload, text, sql, workspace)

    def run(self, kind, example, upload, text, sql, workspace):
        """(workspace, table, status, csv): run the SQL box's query in the sandbox."""
        workspace = self._workspace(workspace)
        hidden, no_csv = gr.update(value=None, visible=False), gr.update(visible=False)
        if not (sql or "").strip():
            return workspace, hidden, "Nothing to run yet: ask a question or write a query.", no_csv
        try:
            database = self._open(workspace, kind, example, upload, text)
        except Text2SQLError as error:
            return workspace, hidden, f"❌ {plain(error)}", no_csv
        result = run_or_check(database, sql)
        status = result_summary(result, database.has_data)
        if not result.ok or not database.has_data:
            return workspace, hidden, status, no_csv
        csv = write_csv(result, workspace.folder / "result.csv")
        table = gr.update(value=result_frame(result), visible=True)
        return workspace, table, status, gr.update(value=str(csv), visible=True)

    # -- Compare tab -------------------------------------------------------------

    @plain_errors
    def compare(self, kind, example, upload, text, question, models, workspace, mode=AUTO,
                progress=gr.Progress(track_tqdm=True)):
        """(workspace, summary, then header/SQL/table for each of MAX_COMPARED slots)."""
        workspace = self._workspace(workspace)
        decoding = Decoding.from_mode(mode)
        database = self._open(workspace, kind, example, upload, text)
        comparisons, agree = self.service.compare(database, question, models, progress, decoding)
        slots = []
        for i in range(MAX_COMPARED):
            if i >= len(comparisons):
                slots += [gr.update(visible=False), gr.update(visible=False), gr.update(visible=False)]
                continue
            c = comparisons[i]
            header = f"### {c.model}\n"
            header += f"{c.generation.execution_time_ms / 1000:.1f} s · " if c.generation else ""
            header += result_summary(c.result, database.has_data)
            if c.generation and how_answered(c.generation):
                header += "\n\n" + plain(how_answered(c.generation))
            table = result_frame(c.result) if c.result.ok and database.has_data else None
            slots += [
                gr.update(value=header, visible=True),
                gr.update(value=c.generation.sql if c.generation else "", visible=True),
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


def agreement_text(comparisons, agree: bool | None) -> str:
    failed = [c.model for c in comparisons if not c.result.ok]
    ran = len(comparisons) - len(failed)
    if agree is None and ran >= 2:
        text = "The models' SQL can't be compared by result here: a pasted schema has no rows."
    elif agree is None:
        text = "Fewer than two models produced a result, so there is nothing to compare."
    elif agree:
        text = f"✅ The {ran} models that ran return the same rows." if failed else "✅ All models return the same rows."
    else:
        text = "⚠️ The models disagree: their results differ."
    if failed:
        text += f" Failed: {', '.join(failed)}."
    return text
