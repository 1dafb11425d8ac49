"""Database schemas: read from a SQLite file, parsed from pasted text, rendered as DDL.

Three ways in, one data model (``Schema`` of ``Table`` of ``Column``):

* ``read_schema(conn)`` introspects an open SQLite connection with sqlite-utils:
  tables, typed columns, primary keys, foreign keys, and a few distinct sample values
  per column.
* ``parse_schema_text(text)`` accepts ``CREATE TABLE`` DDL (parsed with sqlglot; any
  dialect sqlglot reads, transpiled to SQLite when SQLite rejects the original) or the
  compact form ``Table: users`` / ``Columns: id, name, age``. It returns the schema and
  the SQLite DDL that materialises it in an empty in-memory database (see
  ``text2sql.sandbox.Sandbox.from_ddl``), so generated SQL can be validated without data.
* ``table_ddl(table)`` renders one table as ``CREATE TABLE`` with foreign keys and the
  sample values as ``-- example: [...]`` comments: the format Qwen2.5-Coder and OmniSQL
  are trained on.

Bad schema text raises ``SchemaError`` whose message names the offending line.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sqlite3
from collections.abc import Sequence

import sqlglot
import sqlglot.errors
import sqlite_utils
from sqlglot import exp

from text2sql.errors import SchemaError


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str = ""
    not_null: bool = False
    samples: tuple = ()


@dataclasses.dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    other_table: str
    other_columns: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclasses.dataclass(frozen=True)
class Schema:
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = ()
    """Things the reader should know: tables left out, sample values skipped, ..."""

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name.lower() == name.lower():
                return table
        raise KeyError(name)

    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]

    def with_sample_limit(self, n: int) -> Schema:
        """The same schema with at most ``n`` sample values per column."""
        tables = tuple(
            dataclasses.replace(t, columns=tuple(dataclasses.replace(c, samples=c.samples[:n]) for c in t.columns))
            for t in self.tables
        )
        return dataclasses.replace(self, tables=tables)

    def without_tables(self, names: set[str]) -> Schema:
        return dataclasses.replace(self, tables=tuple(t for t in self.tables if t.name not in names))

    def to_ddl(self, samples: bool = True) -> str:
        return "\n\n".join(table_ddl(t, samples=samples) for t in self.tables)


# ---------------------------------------------------------------------------
# Identifiers and rendering


@functools.lru_cache(maxsize=4096)
def _bare_identifier_ok(name: str) -> bool:
    """True when SQLite itself accepts ``name`` unquoted as a table and column name."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return False
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(f"SELECT {name}.{name} FROM (SELECT 1 AS {name}) AS {name}")
        return True
    except sqlite3.Error:
        return False  # a reserved word such as ORDER or GROUP
    finally:
        probe.close()


def quote_identifier(name: str, always: bool = False) -> str:
    """``name`` as SQLite needs it written: bare when that is unambiguous, else double-quoted."""
    if not always and _bare_identifier_ok(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _sample_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value) if isinstance(value, float) else str(value)


def table_ddl(table: Table, samples: bool = True) -> str:
    """``CREATE TABLE`` for ``table``; with ``samples`` each column carries its example values."""
    lines = []
    for column in table.columns:
        line = quote_identifier(column.name)
        if column.type:
            line += " " + column.type
        if column.not_null:
            line += " NOT NULL"
        lines.append([line, ", ".join(_sample_literal(v) for v in column.samples) if samples else ""])
    if table.primary_key:
        lines.append(["PRIMARY KEY (" + ", ".join(quote_identifier(c) for c in table.primary_key) + ")", ""])
    for fk in table.foreign_keys:
        cols = ", ".join(quote_identifier(c) for c in fk.columns)
        other_cols = ", ".join(quote_identifier(c) for c in fk.other_columns)
        ref = quote_identifier(fk.other_table) + (f" ({other_cols})" if other_cols else "")
        lines.append([f"FOREIGN KEY ({cols}) REFERENCES {ref}", ""])
    body = []
    for i, (line, example) in enumerate(lines):
        comma = "," if i < len(lines) - 1 else ""
        body.append(f"  {line}{comma}" + (f" -- example: [{example}]" if example else ""))
    return f"CREATE TABLE {quote_identifier(table.name)} (\n" + "\n".join(body) + "\n);"


# ---------------------------------------------------------------------------
# Introspection of a SQLite connection


def read_schema(
    conn: sqlite3.Connection,
    *,
    sample_values: int = 3,
    max_value_chars: int = 40,
    max_tables: int = 500,
) -> Schema:
    """Schema of every table in ``conn`` (read-only use), with distinct sample values.

    ``conn`` should be an application-owned read-only connection (PRAGMAs are needed, so
    it can't carry the sandbox's authorizer); the caller bounds its run time.
    """
    db = sqlite_utils.Database(conn)
    names = [n for n in db.table_names() if not n.startswith("sqlite_")]
    notes = []
    if len(names) > max_tables:
        notes.append(f"The database has {len(names)} tables; only the first {max_tables} were read.")
        names = names[:max_tables]
    tables = [_read_table(db.table(name)) for name in names]
    if sample_values > 0:
        tables = _with_samples(conn, tables, sample_values, max_value_chars, notes)
    return Schema(tables=tuple(tables), notes=tuple(notes))


def _read_table(table: sqlite_utils.db.Table) -> Table:
    # Read once: each ``Table.columns`` lists every table name first (3000 tables: seconds).
    columns = table.columns
    pk_columns = sorted((c for c in columns if c.is_pk), key=lambda c: c.is_pk)
    return Table(
        name=table.name,
        columns=tuple(Column(name=c.name, type=c.type or "", not_null=bool(c.notnull) and not c.is_pk) for c in columns),
        primary_key=tuple(c.name for c in pk_columns),
        foreign_keys=_foreign_keys(table),
    )


def _with_samples(conn: sqlite3.Connection, tables: list[Table], n: int, max_chars: int, notes: list[str]) -> list[Table]:
    """Tables with example values; a column whose values can't be read keeps none (with a note),
    and once the caller's time limit interrupts a query the remaining columns keep none."""
    result, skipped, interrupted = [], 0, False
    for table in tables:
        columns = []
        for column in table.columns:
            samples = ()
            if not interrupted:
                try:
                    samples = _distinct_samples(conn, table.name, column.name, n, max_chars)
                except sqlite3.Error as error:
                    interrupted = "interrupted" in str(error)
                    skipped += 1
            columns.append(dataclasses.replace(column, samples=samples))
        result.append(dataclasses.replace(table, columns=tuple(columns)))
    if interrupted:
        notes.append("Reading example values took too long; some columns are shown without examples.")
    elif skipped:
        notes.append(f"Example values of {skipped} column(s) could not be read.")
    return result


def _foreign_keys(table: sqlite_utils.db.Table) -> tuple[ForeignKey, ...]:
    found = []
    # PRAGMA foreign_key_list reports the last-declared key first; restore declaration order.
    for fk in reversed(table.foreign_keys):
        columns = tuple(fk.columns) if fk.is_compound else (fk.column,)
        other = tuple(fk.other_columns) if fk.is_compound else ((fk.other_column,) if fk.other_column else ())
        key = ForeignKey(columns=columns, other_table=fk.other_table, other_columns=other)
        if key not in found:
            found.append(key)
    return tuple(found)


# Scan at most this many rows per column when looking for distinct examples, so a huge
# table with few distinct values can't stall introspection.
_SAMPLE_SCAN_ROWS = 1000


def _distinct_samples(conn: sqlite3.Connection, table: str, column: str, n: int, max_chars: int) -> tuple:
    if n <= 0:
        return ()
    t, c = quote_identifier(table, always=True), quote_identifier(column, always=True)
    # Long strings are cut inside SQLite, so a gigantic cell is never pulled into Python.
    sql = (
        f"SELECT DISTINCT v FROM (SELECT CASE WHEN typeof({c}) = 'text' THEN substr({c}, 1, {4 * max_chars}) "
        f"ELSE {c} END AS v FROM {t} WHERE {c} IS NOT NULL AND typeof({c}) != 'blob' LIMIT {_SAMPLE_SCAN_ROWS}) LIMIT {n}"
    )
    values = []
    for (value,) in conn.execute(sql):
        if isinstance(value, str):
            value = " ".join(value.split())
            if len(value) > max_chars:
                value = value[: max_chars - 1] + "…"
        values.append(value)
    return tuple(values)


# ---------------------------------------------------------------------------
# Pasted schema text


def parse_schema_text(text: str) -> tuple[Schema, list[str]]:
    """Parse pasted DDL or the compact ``Table:``/``Columns:`` form.

    Returns the schema (no sample values: there is no data) and the SQLite statements
    that create it in an empty database. Raises ``SchemaError`` naming the bad line.
    """
    if not text or not text.strip():
        raise SchemaError("The schema is empty. Paste CREATE TABLE statements or 'Table: name' / 'Columns: a, b' blocks.")
    try:
        if re.search(r"^\s*(table|columns)\s*:", text, flags=re.IGNORECASE | re.MULTILINE):
            statements = _compact_to_ddl(text)
        else:
            statements = _ddl_statements(text)
    except RecursionError:  # sqlglot's parser recurses once per nested parenthesis
        raise SchemaError("The schema is nested too deeply to read (too many parentheses inside parentheses).") from None
    conn = sqlite3.connect(":memory:")
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        for line_no, statement in statements:
            try:
                conn.execute(statement)
            except sqlite3.Error as error:
                raise SchemaError(f"SQLite rejected this table: {error}", line=line_no) from None
        schema = read_schema(conn, sample_values=0)
    finally:
        conn.close()
    if not schema.tables:
        raise SchemaError("No CREATE TABLE statement found in the schema text.")
    return schema, [s for _, s in statements]


def _split_statements(text: str) -> list[tuple[int, str]]:
    """Top-level statements of ``text`` with the line each starts on (semicolons in strings are kept)."""
    try:
        tokens = sqlglot.tokenize(text, read="sqlite")
    except sqlglot.errors.TokenError as error:
        raise SchemaError(f"Could not read the schema text: {error}") from None
    statements, start = [], 0
    for token in tokens:
        if token.token_type == sqlglot.tokens.TokenType.SEMICOLON:
            statements.append((start, token.start))
            start = token.end + 1
    statements.append((start, len(text)))
    result = []
    for begin, end in statements:
        chunk = text[begin:end]
        if not _strip_sql_comments(chunk).strip():
            continue
        leading = len(chunk) - len(chunk.lstrip())
        result.append((text.count("\n", 0, begin + leading) + 1, chunk.strip()))
    return result


def _strip_sql_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.DOTALL)


def _ddl_statements(text: str) -> list[tuple[int, str]]:
    """SQLite ``CREATE TABLE`` statements for pasted DDL, each with its first line number."""
    result = []
    for line_no, chunk in _split_statements(text):
        expression = _parse_one(chunk, line_no)
        if isinstance(expression, exp.Create) and expression.kind == "INDEX":
            continue  # indexes don't change what the model can query
        if not (isinstance(expression, exp.Create) and expression.kind == "TABLE"):
            # The statement's own first words: sqlglot's name for what it parsed ("ALIAS" for
            # "hello world") means nothing to the person who pasted it.
            start = " ".join(_strip_sql_comments(chunk).split()[:3])
            raise SchemaError(f"Only CREATE TABLE statements are accepted here; this one starts '{start}'.",
                              line=line_no)
        if expression.expression is not None:
            raise SchemaError("CREATE TABLE ... AS SELECT can't be used in a pasted schema.", line=line_no)
        result.append((line_no, _as_sqlite(chunk, expression)))
    return result


def _parse_one(chunk: str, line_no: int) -> exp.Expression:
    errors = []
    for dialect in ("sqlite", "mysql", "postgres"):
        try:
            parsed = sqlglot.parse(chunk, read=dialect)
        except sqlglot.errors.ParseError as error:
            errors.append(error)
            continue
        except sqlglot.errors.TokenError as error:
            raise SchemaError(f"Could not read this statement: {error}", line=line_no) from None
        expressions = [e for e in parsed if e is not None]
        if len(expressions) != 1:
            raise SchemaError("Expected one statement here.", line=line_no)
        return expressions[0]
    first = errors[0].errors[0] if errors and errors[0].errors else {}
    line = line_no + (first.get("line", 1) or 1) - 1
    near = first.get("highlight", "")
    detail = first.get("description", "syntax error")
    raise SchemaError(f"Could not parse the CREATE TABLE statement: {detail}" + (f" near {near!r}" if near else ""), line=line)


def _as_sqlite(original: str, expression: exp.Expression) -> str:
    """The original statement when SQLite accepts it (keeps the user's types), else sqlglot's SQLite rendering."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        probe.execute(original)
        return original
    except sqlite3.Error:
        pass
    finally:
        probe.close()
    # Drop what SQLite has no use for and would reject (ENGINE=..., MySQL AUTO_INCREMENT
    # on a non-INTEGER key): the in-memory copy only needs tables, columns and keys.
    expression = expression.copy()
    for node in list(expression.find_all(exp.Properties, exp.AutoIncrementColumnConstraint)):
        (node.parent if isinstance(node, exp.AutoIncrementColumnConstraint) else node).pop()
    return expression.sql(dialect="sqlite")


# "name", "name TYPE" or "name (TYPE)"; a trailing word counts as a type only when it looks
# like one (SQLite's affinity words and the usual names), so "user id" stays one column name.
_TYPE = r"(?:[A-Za-z ]*?(?:INT|CHAR|CLOB|TEXT|BLOB|REAL|FLOA|DOUB|NUM|DEC|BOOL|DATE|TIME|JSON|STRING|SERIAL|MONEY|UUID)[A-Za-z]*)(?:\s*\(\s*\d+(?:\s*,\s*\d+)?\s*\))?"
_COLUMN_SPEC = re.compile(
    rf"^\s*(?P<name>\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|.+?)(?:\s+\(?(?P<type>{_TYPE})\)?)?\s*$", flags=re.IGNORECASE
)


def _compact_to_ddl(text: str) -> list[tuple[int, str]]:
    """``Table: users`` / ``Columns: id, name INTEGER, age`` blocks to CREATE TABLE statements."""
    tables: list[tuple[int, Table]] = []
    pending: tuple[int, str] | None = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep or key not in ("table", "columns"):
            raise SchemaError(f"Expected 'Table: <name>' or 'Columns: <a, b, ...>', got {line[:60]!r}.", line=line_no)
        value = value.strip()
        if key == "table":
            if pending:
                raise SchemaError(f"Table {pending[1]!r} has no 'Columns:' line.", line=pending[0])
            if not value:
                raise SchemaError("'Table:' needs a table name.", line=line_no)
            pending = (line_no, _unquote(value))
        else:
            if not pending:
                raise SchemaError("'Columns:' must follow a 'Table: <name>' line.", line=line_no)
            columns = _compact_columns(value, line_no)
            tables.append((pending[0], Table(name=pending[1], columns=columns)))
            pending = None
    if pending:
        raise SchemaError(f"Table {pending[1]!r} has no 'Columns:' line.", line=pending[0])
    return [(line_no, table_ddl(table, samples=False)) for line_no, table in tables]


def _compact_columns(value: str, line_no: int) -> tuple[Column, ...]:
    columns = []
    for part in _split_commas(value):
        match = _COLUMN_SPEC.match(part)
        if not part.strip() or not match:
            raise SchemaError(f"Can't read the column {part.strip()!r}; write 'name' or 'name TYPE'.", line=line_no)
        columns.append(Column(name=_unquote(match["name"]), type=(match["type"] or "").strip().upper()))
    names = [c.name.lower() for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"Column {duplicates[0]!r} is listed twice.", line=line_no)
    return tuple(columns)


def _split_commas(value: str) -> Sequence[str]:
    """Split on commas outside parentheses and quotes (``price DECIMAL(10, 2)`` stays whole)."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"`[":
            quote = "]" if ch == "[" else ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return parts


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and (name[0], name[-1]) in {('"', '"'), ("`", "`"), ("[", "]")}:
        return name[1:-1]
    return name
