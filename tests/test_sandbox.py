"""The sandbox: hostile SQL is refused or stopped, and the database never changes.

    python -m pytest tests/test_sandbox.py -v
"""

import os
import time

import pytest

from tests.conftest import sha256_of
from text2sql.errors import DatabaseFileError
from text2sql.sandbox import Sandbox, check_database_file, private_copy
from text2sql.schema import parse_schema_text

from tests.hostile_sql import BIG_CTE, HOSTILE, RUNAWAY_CTE

TIME_LIMIT_S = 1.0

@pytest.fixture
def short_limits(monkeypatch):
    monkeypatch.setenv("TEXT2SQL_QUERY_TIMEOUT_S", str(TIME_LIMIT_S))
    monkeypatch.setenv("TEXT2SQL_QUERY_KILL_AFTER_S", "1")  # a worker stuck in one C call dies at 2 s


def _listing(folder):
    return sorted(os.listdir(folder))


@pytest.fixture(params=["file", "private immutable copy"])
def hostile_target(request, awkward_db, tmp_path, short_limits):
    if request.param == "file":
        return awkward_db, Sandbox.from_file(awkward_db)
    copy = private_copy(awkward_db, tmp_path / "private")
    return copy, Sandbox.from_file(copy, immutable=True)


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_sql_is_refused_or_stopped_and_changes_nothing(hostile_target, sql):
    path, sandbox = hostile_target
    before_hash, before_files = sha256_of(path), _listing(path.parent)
    started = time.monotonic()
    result = sandbox.run(sql)
    elapsed = time.monotonic() - started
    assert result.error, f"{sql!r} was allowed: {result.rows[:3]}"
    assert result.error.startswith(("Refused", "Stopped", "SQLite error"))
    assert elapsed < TIME_LIMIT_S + 2
    assert sha256_of(path) == before_hash
    assert _listing(path.parent) == before_files
    # and the table is still whole afterwards
    assert sandbox.run("SELECT count(*) FROM person").rows == [(3,)]


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_sql_on_a_pasted_schema(sql, short_limits):
    _, ddl = parse_schema_text("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT UNIQUE, born REAL);")
    sandbox = Sandbox.from_ddl(ddl)
    assert sandbox.run(sql).error
    assert sandbox.run("SELECT count(*) FROM person").rows == [(0,)]


def test_messages_say_why(awkward_db, short_limits):
    sandbox = Sandbox.from_file(awkward_db)
    assert sandbox.run("DELETE FROM person").error.startswith("Refused: only read-only SELECT")
    assert sandbox.run("SELECT 1; SELECT 2").error == "Refused: only one SQL statement can run at a time."
    assert sandbox.run(RUNAWAY_CTE).error == f"Stopped: the query ran longer than the {TIME_LIMIT_S:g} s limit."
    assert "larger than" in sandbox.run("SELECT randomblob(2000000000)").error
    assert sandbox.run("SELEC 1").error.startswith("SQLite error:")
    # printf can loop for seconds inside one C call, out of the progress handler's reach
    assert "printf" in sandbox.run("SELECT printf('%.*c', 2000000000, 'x')").error
    assert sandbox.run("   ").error == "There is no SQL to run."


GOOD = [
    ("SELECT name FROM person ORDER BY id", [("Ann",), ("Bob",), ("Cy",)]),
    ("-- a comment first\nSELECT count(*) FROM person;", [(3,)]),
    ('SELECT "full name" FROM "Table With Space" WHERE id = 2', [("Grace Hopper",)]),
    ('SELECT count(*) FROM "table/with/slashes.csv"', [(1,)]),
    ('SELECT amount FROM "order" WHERE "select" = \'b\'', [(10.25,)]),
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT sum(x) FROM c", [(15,)]),
    ("SELECT p.name FROM person p JOIN friendship f ON f.person_a = p.id ORDER BY 1", [("Ann",), ("Bob",)]),
    ("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'person'", [("person",)]),
    ("SELECT upper(name), length(name), abs(-1), coalesce(born, 0) FROM person WHERE id = 3", [("CY", 2, 1, 0)]),
]


@pytest.mark.parametrize("sql, rows", GOOD)
def test_read_only_queries_work(awkward_db, sql, rows):
    result = Sandbox.from_file(awkward_db).run(sql)
    assert result.error is None
    assert result.rows == rows


def test_rows_are_capped_with_a_truncated_flag(awkward_db):
    sandbox = Sandbox.from_file(awkward_db)
    result = sandbox.run(BIG_CTE + "SELECT x FROM n", max_rows=1000)
    assert len(result.rows) == 1000 and result.truncated
    assert result.columns == ["x"]
    small = sandbox.run("SELECT id FROM person", max_rows=3)
    assert len(small.rows) == 3 and not small.truncated


def test_explain_validates_without_running(awkward_db, short_limits):
    sandbox = Sandbox.from_file(awkward_db)
    assert sandbox.explain("SELECT name FROM person") is None
    assert "no such table" in sandbox.explain("SELECT * FROM nope")
    assert sandbox.explain("DELETE FROM person").startswith("Refused")
    started = time.monotonic()
    assert sandbox.explain(RUNAWAY_CTE) is None  # compiles fine; EXPLAIN never runs it
    assert time.monotonic() - started < 1


def test_malicious_view_does_not_run_with_trusted_schema_off(tmp_path):
    from tests.conftest import build_db

    path = build_db(
        tmp_path / "view.sqlite",
        "CREATE TABLE t (x); INSERT INTO t VALUES (1);"
        "CREATE VIEW v AS SELECT x, load_extension('/tmp/evil') AS boom FROM t;",
    )
    result = Sandbox.from_file(path).run("SELECT * FROM v")
    assert result.error


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"hello, this is not a database at all" * 10, "not a SQLite database"),
        (b"SQLite format 3\x00" + b"\x00" * 20, "truncated"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    with pytest.raises(DatabaseFileError, match=reason):
        check_database_file(path)


def test_oversized_files_are_refused(awkward_db, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_MAX_UPLOAD_BYTES", "1000")
    with pytest.raises(DatabaseFileError, match="the limit is"):
        check_database_file(awkward_db)


def test_private_copy_is_read_only_and_separate(awkward_db, tmp_path):
    copy = private_copy(awkward_db, tmp_path / "private")
    assert copy != awkward_db and sha256_of(copy) == sha256_of(awkward_db)
    assert not os.access(copy, os.W_OK) or os.geteuid() == 0
    assert Sandbox.from_file(copy, immutable=True).run("SELECT count(*) FROM person").rows == [(3,)]
