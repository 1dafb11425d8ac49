"""Where a question's database comes from: an example, an uploaded file, or a pasted schema.

Uploads are untrusted: ``text2sql.pipeline.Database.from_file(..., private_dir=...)``
checks them (size, SQLite header, ``quick_check``), copies them into the user's own
folder and opens the copy immutable; the uploaded file is never opened for writing.
A ``Workspace`` is that folder plus the database last opened for one browser session;
it is deleted when the session ends (``close``), and every folder is deleted on shutdown.

    examples = ExampleDatabases(tmp_dir)
    workspace = Workspace(uploads_root)
    database = open_source(workspace, examples, UPLOAD, example=None, upload="/tmp/x.db", text="")
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from examples.build import Example, build_all, list_examples
from text2sql.errors import DatabaseFileError, SchemaError
from text2sql.pipeline import Database
from text2sql.settings import get_settings


EXAMPLE, UPLOAD, PASTE = "Example database", "Upload a SQLite file", "Paste a schema"
SOURCES = [EXAMPLE, UPLOAD, PASTE]
UPLOAD_TYPES = [".sqlite", ".db", ".sqlite3"]

NO_UPLOAD = "Upload a SQLite database file (.sqlite, .db or .sqlite3) first."
NO_SCHEMA = "Paste a schema first: CREATE TABLE statements, or lines like 'Table: users' and 'Columns: id, name, age'."
NO_SOURCE = "Choose an example database, upload a SQLite file, or paste a schema."


class ExampleDatabases:
    """The example databases (``examples/``), built from their SQL into ``folder``."""

    def __init__(self, folder: str | os.PathLike):
        self.paths = build_all(folder)
        self.examples: list[Example] = list_examples()
        self._opened: dict[str, Database] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [example.name for example in self.examples]

    def choices(self) -> list[tuple[str, str]]:
        """(label, name) pairs for a dropdown."""
        return [(example.title, example.name) for example in self.examples]

    def path(self, name: str) -> Path:
        if name not in self.paths:
            raise DatabaseFileError(f"There is no example database called {name!r}; pick one from the list.")
        return self.paths[name]

    def database(self, name: str) -> Database:
        """The example opened (once: the files never change), for requests that name it."""
        with self._lock:
            if name not in self._opened:
                self._opened[name] = Database.from_file(self.path(name))
            return self._opened[name]


class Workspace:
    """One browser session's private folder (its uploads are copied here) and the database it
    opened last, so asking several questions doesn't re-check and re-copy the file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._folder: Path | None = None  # made on first use: most visitors never upload
        self._key: tuple | None = None
        self._database: Database | None = None
        self._lock = threading.Lock()  # one session's events may run in parallel threads

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
        return self._folder

    def open(self, key: tuple, load: Callable[[], Database]) -> Database:
        """The database for ``key``, loading it (and dropping the previous one) when it changed."""
        with self._lock:
            if key != self._key:
                self._key, self._database = None, None
                self._delete_copies()
                self._database = load()
                self._key = key
            return self._database

    def _delete_copies(self) -> None:
        if self._folder is not None:
            for copy in self._folder.glob("*.sqlite"):
                copy.unlink(missing_ok=True)

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    @staticmethod
    def close_if_any(workspace: Workspace | None) -> None:
        """``gr.State``'s delete callback: the session has ended."""
        if workspace is not None:
            workspace.close()


def open_source(
    workspace: Workspace, examples: ExampleDatabases, kind: str, *, example: str | None, upload: str | None, text: str
) -> Database:
    """The database the UI's source controls point at (``kind`` is one of ``SOURCES``)."""
    if kind == EXAMPLE:
        path = examples.path(example or "")
        return workspace.open(("example", example), lambda: Database.from_file(path))
    if kind == UPLOAD:
        if not upload:
            raise DatabaseFileError(NO_UPLOAD)
        return workspace.open(("upload", upload), lambda: Database.from_file(upload, private_dir=workspace.folder))
    if kind == PASTE:
        check_schema_text(text)
        return workspace.open(("paste", text), lambda: Database.from_text(text))
    raise DatabaseFileError(NO_SOURCE)


def open_request_source(schema: str, database_file: str | None, private_dir: str | os.PathLike) -> Database:
    """The database of one API request: an uploaded file (copied into ``private_dir``, which the
    caller deletes afterwards) or else schema text."""
    if database_file:
        return Database.from_file(database_file, private_dir=private_dir)
    if not (schema or "").strip():
        raise SchemaError("Give a schema (CREATE TABLE statements or 'Table:'/'Columns:' lines) or a SQLite file.")
    check_schema_text(schema)
    return Database.from_text(schema)


def check_schema_text(text: str) -> None:
    if not (text or "").strip():
        raise SchemaError(NO_SCHEMA)
    limit = get_settings().max_schema_chars
    if len(text) > limit:
        raise SchemaError(f"The schema is {len(text):,} characters long; the limit is {limit:,}.")
