"""Property-based fuzzing (hypothesis) of everything that reads untrusted text: the schema
parser, the SQL post-processor and the sandbox. Nothing may fail with anything but the
documented error type, and the database never changes.

    python -m pytest tests/test_fuzz.py -v
"""

import re
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import AWKWARD_SQL, sha256_of
from text2sql.errors import SchemaError
from text2sql.sandbox import QueryResult, Sandbox
from text2sql.schema import parse_schema_text
from text2sql.sqlout import extract_sql, sql_is_complete

DDL_TOKENS = [
    "CREATE", "TABLE", "INDEX", "VIEW", "(", ")", ",", ";", "\n", " ", "INTEGER", "TEXT", "PRIMARY KEY",
    "REFERENCES", "FOREIGN KEY", "NOT NULL", '"', "'", "`", "[", "]", "--", "/*", "*/", "users", "id",
    "Table:", "Columns:", "AS", "SELECT", "DEFAULT", "CHECK", "0", "1.5", "é", "\x00", "AUTO_INCREMENT",
]
SQL_TOKENS = [
    "SELECT", "FROM", "WHERE", "person", "name", "*", "count(*)", "1", "'", '"', ";", "\n", "\n\n", " ",
    "```", "```sql\n", "Here is the query:", "WITH", "x AS (", ")", "--", "DELETE", "DROP TABLE",
    "ATTACH", "PRAGMA", "UNION", "ORDER BY", "(", "zeroblob(1e9)", "Table With Space", "[", "]",
]

token_soup = lambda tokens: st.lists(st.sampled_from(tokens), max_size=40).map("".join)  # noqa: E731
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.one_of(st.text(max_size=300), token_soup(DDL_TOKENS)))
def test_schema_parser_raises_only_schema_error(text):
    try:
        schema, ddl = parse_schema_text(text)
    except SchemaError as error:
        assert str(error)
        return
    assert schema.tables
    conn = sqlite3.connect(":memory:")
    for statement in ddl:  # what it returns really builds the database
        conn.execute(statement)


@FAST
@given(st.one_of(st.text(max_size=300), token_soup(SQL_TOKENS)))
def test_sql_postprocessor_never_fails_and_returns_a_slice_of_the_output(raw):
    extracted = extract_sql(raw)
    assert extracted.sql in raw
    assert extracted.sql == extracted.sql.strip()
    assert not extracted.sql.endswith(";")
    if re.match(r"SELECT\b", extracted.sql, re.IGNORECASE) and "```" not in extracted.sql:
        assert extract_sql(extracted.sql) == extracted.__class__(sql=extracted.sql, chatty=False)
    assert isinstance(sql_is_complete(raw), bool)


@FAST
@given(st.one_of(st.text(max_size=200), token_soup(SQL_TOKENS)))
def test_sandbox_answers_every_input_and_never_changes_the_database(tmp_path_factory, sql):
    folder = tmp_path_factory.getbasetemp() / "fuzz-db"
    path = folder / "awkward.sqlite"
    if not path.exists():
        folder.mkdir(exist_ok=True)
        conn = sqlite3.connect(path)
        conn.executescript(AWKWARD_SQL)
        conn.close()
    before = sha256_of(path)
    result = Sandbox.from_file(path).run(sql, timeout_s=0.5)
    assert isinstance(result, QueryResult)
    assert result.error is None or result.error.startswith(("Refused", "Stopped", "SQLite error", "There is no SQL"))
    assert sha256_of(path) == before


def test_deeply_nested_schema_text_is_a_schema_error_not_a_crash():
    """sqlglot's parser recurses once per parenthesis: 5000 of them raised RecursionError."""
    nested = "CREATE TABLE t (a INTEGER CHECK (" + "(" * 5000 + "a" + ")" * 5000 + "));"
    try:
        parse_schema_text(nested)
    except SchemaError as error:
        assert "nested too deeply" in str(error)
    else:
        raise AssertionError("accepted")
