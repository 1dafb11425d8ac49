"""The only way SQL written by a user or a model gets run: a locked-down SQLite connection.

Layers (each stops something the others don't; the threat model is in SECURITY.md):

* the file is opened read-only (URI ``mode=ro``; ``immutable=1`` on a private copy of an
  upload), with ``PRAGMA query_only=1``, ``trusted_schema=OFF`` (views and triggers in an
  uploaded file are attacker-written), ``cell_size_check=ON`` and ``mmap_size=0``;
* ``setlimit(ATTACHED, 0)``: ``mode=ro`` alone lets ``ATTACH 'x.db'`` create and write new
  files and ``VACUUM INTO`` copy the database;
* an allow-list authorizer: SELECT, READ, FUNCTION (minus a deny-list) and RECURSIVE only;
* one statement per call (sqlite3's ``execute`` refuses more; ``executescript`` is never used);
* a progress handler that interrupts any query after ``query_timeout_s``;
* ``SQLITE_LIMIT_LENGTH`` so string functions can't build gigabyte values;
* ``temp_store=MEMORY``: a big sort would otherwise spill into files under /var/tmp;
* at most ``max_rows`` rows and ``max_result_bytes`` of values fetched, with a ``truncated`` flag;
* each query runs in a worker process (``text2sql.workers``) with a memory limit, killed when it
  overruns: the progress handler can't stop one long C call. So does ``PRAGMA quick_check`` of
  an uploaded file (``check_database_file``), which computes the file's generated columns.

    from text2sql.sandbox import Sandbox
    result = Sandbox.from_file("db.sqlite").run("SELECT count(*) FROM singer")
    print(result.columns, result.rows, result.error)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from text2sql.errors import DatabaseFileError
from text2sql.settings import Settings, get_settings

if TYPE_CHECKING:  # text2sql.schema imports sqlite-utils and pandas: too slow for a query worker
    from text2sql.schema import Schema


SQLITE_HEADER = b"SQLite format 3\x00"

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
# Functions that touch the file system or SQLite internals when compiled in, and printf/
# format: printf('%.*c', 2000000000, 'x') loops for seconds inside one C call, where the
# progress handler can't interrupt it.
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "zipfile", "printf", "format"}

# Check the clock every this many SQLite VM instructions (well under a millisecond).
_PROGRESS_EVERY = 1000


@dataclasses.dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool = False
    elapsed_ms: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _authorizer(action, arg1, arg2, db_name, trigger):
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _harden_pragmas(conn: sqlite3.Connection, settings: Settings) -> None:
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA cell_size_check = ON")
    conn.execute("PRAGMA mmap_size = 0")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, settings.max_value_bytes)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, settings.max_sql_chars)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, settings.max_like_pattern_chars)


def _set_deadline(conn: sqlite3.Connection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_EVERY)


def _interrupted(error: Exception) -> bool:
    """SQLite stopped the statement because the progress handler's deadline passed."""
    return "interrupted" in str(error).lower()


def _explain_error(error: Exception, settings: Settings) -> str:
    """A plain-language message for a refused or failed query."""
    text = str(error)
    lowered = text.lower()
    if "authoriz" in lowered or "too many attached" in lowered or "readonly" in lowered or "query_only" in lowered:
        return "Refused: only read-only SELECT queries can run here (" + text + ")."
    if _interrupted(error):
        return f"Stopped: the query ran longer than the {settings.query_timeout_s:g} s limit."
    if "too big" in lowered:
        return f"Stopped: the query built a value larger than the {settings.max_value_bytes:,}-byte limit."
    if isinstance(error, MemoryError) or "out of memory" in lowered:
        return f"Stopped: the query needed more than the {settings.query_memory_bytes // 2**20:,} MB memory limit."
    if "one statement at a time" in lowered:
        return "Refused: only one SQL statement can run at a time."
    if "sql too long" in lowered or "too long" in lowered:
        return f"Refused: the SQL is longer than the {settings.max_sql_chars:,}-character limit."
    return f"SQLite error: {text}"


def _strip_sql(sql: str) -> str:
    sql = (sql or "").strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    return sql


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a sandbox's database lives, in a form a worker process can receive (pickled):
    a SQLite URI, or the serialized image of an in-memory database."""

    uri: str = ""
    image: bytes = b""

    def connect(self) -> sqlite3.Connection:
        if self.uri:
            return sqlite3.connect(self.uri, uri=True, check_same_thread=False)
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.deserialize(self.image)
        return conn


def use_workers(settings: Settings) -> bool:
    """Worker processes need POSIX (socket fds passed to a child, setitimer): not on Windows."""
    return settings.query_workers > 0 and os.name == "posix"


def _connect_untrusted(source: Source, timeout_s: float, settings: Settings) -> sqlite3.Connection:
    conn = source.connect()
    _harden_pragmas(conn, settings)
    conn.set_authorizer(_authorizer)
    _set_deadline(conn, timeout_s)
    return conn


def _fetch(cursor: sqlite3.Cursor, max_rows: int, max_bytes: int) -> tuple[list[tuple], bool]:
    """(rows, truncated): at most ``max_rows`` rows and ``max_bytes`` of values, one row at a time."""
    rows, size = [], 0
    for row in cursor:
        size += sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)
        if len(rows) == max_rows or size > max_bytes:
            return rows, True
        rows.append(tuple(row))
    return rows, False


def execute(source: Source, sql: str, *, explain: bool, max_rows: int, timeout_s: float, settings: Settings) -> QueryResult:
    """Run (or, with ``explain``, only compile) one untrusted statement on a fresh hardened
    connection. Never raises for bad SQL: the error is in the result. ``Sandbox`` calls this
    in a worker process (``text2sql.workers``), or in-process when ``query_workers`` is 0."""
    started = time.perf_counter()
    try:
        with closing(_connect_untrusted(source, timeout_s, settings)) as conn:
            if explain:
                conn.execute("EXPLAIN " + sql).fetchall()
                columns, rows, truncated = [], [], False
            else:
                cursor = conn.execute(sql)
                columns = [d[0] for d in cursor.description or []]
                rows, truncated = _fetch(cursor, max_rows, settings.max_result_bytes)
    except (sqlite3.Error, sqlite3.Warning, OverflowError, MemoryError) as error:
        elapsed = (time.perf_counter() - started) * 1000
        return QueryResult(columns=[], rows=[], elapsed_ms=elapsed, error=_explain_error(error, settings))
    elapsed = (time.perf_counter() - started) * 1000
    return QueryResult(columns=columns, rows=rows, truncated=truncated, elapsed_ms=elapsed)


class Sandbox:
    """A database that untrusted SQL may read. Each query gets its own hardened connection,
    so one Sandbox can serve many threads."""

    def __init__(self, source: Source, label: str, settings: Settings | None = None):
        self.source = source
        self.label = label
        self.settings = settings or get_settings()

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, immutable: bool = False, settings: Settings | None = None) -> Sandbox:
        """A SQLite file opened read-only; ``immutable`` only for a private copy nobody else writes."""
        path = Path(path)
        if not path.is_file():
            raise DatabaseFileError(f"No database file at {path}.")
        # A read-only connection to a WAL-mode file creates -wal/-shm files beside it;
        # immutable=1 reads the main file alone and writes nothing.
        immutable = immutable or is_wal_mode(path)
        uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
        return cls(Source(uri=uri), label=path.name, settings=settings)

    @classmethod
    def from_ddl(cls, statements: Sequence[str], *, settings: Settings | None = None) -> Sandbox:
        """An empty in-memory database with these tables (for pasted schemas): SQL can be
        validated and run, it just finds no rows."""
        builder = sqlite3.connect(":memory:")
        builder.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        for statement in statements:
            builder.execute(statement)
        image = builder.serialize()
        builder.close()
        return cls(Source(image=image), label="pasted schema", settings=settings)

    # -- running untrusted SQL -------------------------------------------------

    def _execute(self, sql: str, *, explain: bool, max_rows: int, timeout_s: float) -> QueryResult:
        request = {"source": self.source, "sql": sql, "explain": explain, "max_rows": max_rows,
                   "timeout_s": timeout_s, "settings": self.settings}
        if not use_workers(self.settings):
            return execute(**request)
        from text2sql.workers import run_in_worker  # imports this module: not at the top

        return run_in_worker(request)

    def run(self, sql: str, *, max_rows: int | None = None, timeout_s: float | None = None) -> QueryResult:
        """Run one read-only statement; never raises for bad SQL (the error is in the result)."""
        max_rows = self.settings.max_rows if max_rows is None else max_rows
        timeout_s = self.settings.query_timeout_s if timeout_s is None else timeout_s
        sql = _strip_sql(sql)
        if not sql:
            return QueryResult(columns=[], rows=[], error="There is no SQL to run.")
        return self._execute(sql, explain=False, max_rows=max_rows, timeout_s=timeout_s)

    def explain(self, sql: str) -> str | None:
        """Compile ``sql`` without running it (``EXPLAIN``): None when valid, else the error."""
        sql = _strip_sql(sql)
        if not sql:
            return "There is no SQL to check."
        return self._execute(sql, explain=True, max_rows=0, timeout_s=self.settings.query_timeout_s).error

    # -- reading the schema (application-owned, no authorizer: it needs PRAGMAs) --

    def read_schema(self, sample_values: int | None = None) -> Schema:
        from text2sql.schema import read_schema

        settings = self.settings
        sample_values = settings.sample_values if sample_values is None else sample_values
        try:
            with closing(self.source.connect()) as conn:
                _harden_pragmas(conn, settings)
                _set_deadline(conn, settings.introspection_timeout_s)
                return read_schema(
                    conn,
                    sample_values=sample_values,
                    max_value_chars=settings.max_value_chars,
                    max_tables=settings.max_tables,
                )
        except sqlite3.Error as error:
            if _interrupted(error):
                why = f"it took longer than the {settings.introspection_timeout_s:g} s limit."
            else:
                why = _explain_error(error, settings)
            raise DatabaseFileError(f"Could not read the database schema: {why}") from None


# ---------------------------------------------------------------------------
# Files from outside (uploads, CLI arguments)


def is_wal_mode(path: str | os.PathLike) -> bool:
    """The header's read/write version bytes are 2 for a database in WAL journal mode."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    return header.startswith(SQLITE_HEADER) and header[18:20] == b"\x02\x02"


def check_database_file(path: str | os.PathLike, settings: Settings | None = None) -> None:
    """Refuse, with a reason, a file that is not a healthy SQLite database of acceptable size."""
    settings = settings or get_settings()
    path = Path(path)
    if not path.is_file():
        raise DatabaseFileError(f"No database file at {path}.")
    size = path.stat().st_size
    if size == 0:
        raise DatabaseFileError("The file is empty; a SQLite database starts with a 100-byte header.")
    if size > settings.max_upload_bytes:
        raise DatabaseFileError(
            f"The file is {size / 1e6:.1f} MB; the limit is {settings.max_upload_bytes / 1e6:.0f} MB."
        )
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_HEADER):
        raise DatabaseFileError("This is not a SQLite database (the file does not start with 'SQLite format 3').")
    if len(header) < 100:
        raise DatabaseFileError("The file is truncated: it is shorter than the SQLite header.")
    source = Sandbox.from_file(path, immutable=True, settings=settings).source
    report = _integrity_check_isolated(source, settings)
    if report.get("error"):
        raise DatabaseFileError(report["error"])
    if report["problems"] != ["ok"]:
        raise DatabaseFileError("The database is damaged (PRAGMA quick_check: " + "; ".join(report["problems"][:3]) + ").")


def integrity_check(source: Source, settings: Settings) -> dict:
    """``{"problems": PRAGMA quick_check's lines, "error": why SQLite can't read it, or None}``."""
    try:
        with closing(source.connect()) as conn:
            _harden_pragmas(conn, settings)
            _set_deadline(conn, settings.introspection_timeout_s)
            return {"problems": [row[0] for row in conn.execute("PRAGMA quick_check")], "error": None}
    except sqlite3.Error as error:
        if _interrupted(error):
            return {"problems": [], "error": f"Checking the file took longer than the {settings.introspection_timeout_s:g} s limit."}
        return {"problems": [], "error": f"SQLite can't read this file: {error}."}


def _integrity_check_isolated(source: Source, settings: Settings) -> dict:
    """``integrity_check`` in a query worker: quick_check computes the file's generated columns,
    attacker-written expressions that can run for minutes in one C call, out of the progress
    handler's reach (benchmarks/attack_costs.py: a crafted 8 KB file, past the 10 s limit)."""
    if not use_workers(settings):
        return integrity_check(source, settings)
    from text2sql.workers import WorkerFailed, WorkerOverran, call

    try:
        return call("integrity_check", {"source": source, "settings": settings},
                    wait_s=settings.introspection_timeout_s + settings.query_kill_after_s)
    except WorkerOverran:
        return {"error": f"Checking the file took longer than the {settings.introspection_timeout_s:g} s limit."}
    except WorkerFailed as failure:
        return {"error": f"Checking the file stopped: its worker process {failure}."}


def private_copy(path: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Copy ``path`` into ``directory`` under a fresh name, read-only, so the original is never
    opened again and the copy can be opened with ``immutable=1``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{uuid.uuid4().hex}.sqlite"
    shutil.copyfile(path, target)
    target.chmod(0o400)
    return target
