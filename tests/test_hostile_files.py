"""Hostile and broken database files: each is refused with a reason or handled safely, the
process stays healthy, and nothing is written anywhere. Here the core (``Database.from_file``)
and the CLI's ``--db``; the app's upload surfaces are in tests/app/test_hostile_files.py.

    python -m pytest tests/test_hostile_files.py -v
"""

import os

import pytest

from tests.conftest import sha256_of
from tests.hostile_files import CORPUS, INJECTION_TABLE, INJECTION_VALUE, build
from text2sql.cli import EXIT_INPUT, EXIT_OK, main
from text2sql.errors import DatabaseFileError
from text2sql.pipeline import Database, ask



@pytest.fixture(autouse=True)
def short_introspection(monkeypatch):
    """slow_generated_column.sqlite is refused when checking it overruns: sooner than 10 s + 2 s here."""
    monkeypatch.setenv("TEXT2SQL_INTROSPECTION_TIMEOUT_S", "8")  # many_tables reads in 1-4 s, loaded
    monkeypatch.setenv("TEXT2SQL_QUERY_KILL_AFTER_S", "1")

def _snapshot(folder):
    return {name: sha256_of(folder / name) for name in os.listdir(folder)}


@pytest.mark.parametrize("name", [n for n, (_, outcome, _) in CORPUS.items() if outcome == "refused"])
def test_broken_files_are_refused_with_a_reason(tmp_path, name):
    path = build(name, tmp_path / "upload")
    before = _snapshot(path.parent)
    private = tmp_path / "private"
    with pytest.raises(DatabaseFileError) as caught:
        Database.from_file(path, private_dir=private)
    assert CORPUS[name][2] in str(caught.value)
    assert len(str(caught.value)) > 20  # a sentence, not a code
    assert _snapshot(path.parent) == before
    assert not private.exists() or os.listdir(private) == []  # no private copy left behind


@pytest.mark.parametrize("name", [n for n, (_, outcome, _) in CORPUS.items() if outcome == "handled"])
def test_handled_files_change_nothing(tmp_path, name):
    path = build(name, tmp_path / "upload")
    before = _snapshot(path.parent)
    database = Database.from_file(path)  # opened in place, read-only
    assert database.schema.tables
    first = database.schema.tables[0].name.replace('"', '""')
    database.sandbox.run(f'SELECT * FROM "{first}" LIMIT 5')
    assert _snapshot(path.parent) == before


@pytest.mark.parametrize("name", CORPUS)
def test_the_cli_refuses_or_reads_each_file_and_writes_nothing(tmp_path, capsys, name):
    path = build(name, tmp_path / "upload")
    before = _snapshot(path.parent)
    status = main(["run-sql", "--db", str(path), "SELECT count(*) FROM sqlite_master"])
    out, err = capsys.readouterr()
    if CORPUS[name][1] == "refused":
        assert status == EXIT_INPUT and err.startswith("error: ") and CORPUS[name][2] in err
    else:
        assert status == EXIT_OK and "1 row" in out, err
    assert _snapshot(path.parent) == before


def test_wal_mode_file_opens_without_creating_wal_files(tmp_path):
    path = build("wal_mode.sqlite", tmp_path / "upload")
    database = Database.from_file(path)
    assert database.sandbox.run("SELECT x FROM t").rows == [(1,)]
    assert os.listdir(path.parent) == ["wal_mode.sqlite"]


def test_malicious_view_and_trigger_cannot_run(tmp_path):
    database = Database.from_file(build("malicious_view.sqlite", tmp_path), private_dir=tmp_path / "p")
    assert database.schema.table_names() == ["t", "audit"]
    assert database.sandbox.run("SELECT * FROM v").error
    assert database.sandbox.run("INSERT INTO t VALUES (2)").error.startswith("Refused")
    assert database.sandbox.run("SELECT count(*) FROM audit").rows == [(0,)]


def test_gigantic_row_is_read_with_bounded_samples_and_a_clear_error(tmp_path):
    database = Database.from_file(build("gigantic_row.sqlite", tmp_path))
    body = database.schema.table("notes").columns[2]
    assert all(len(v) <= 40 for v in body.samples)
    assert "larger than" in database.sandbox.run("SELECT body FROM notes").error
    assert database.sandbox.run("SELECT id, title FROM notes ORDER BY id").rows == [(1, "huge"), (2, "small")]


@pytest.mark.parametrize("limit", ["0.01", "0.3"])
def test_a_file_too_slow_to_check_or_read_is_refused_naming_the_introspection_limit(tmp_path, monkeypatch, limit):
    # 0.01 s stops the file check (quick_check), 0.3 s the schema reading after it
    monkeypatch.setenv("TEXT2SQL_INTROSPECTION_TIMEOUT_S", limit)
    with pytest.raises(DatabaseFileError, match=rf"took longer than the {limit} s limit"):
        Database.from_file(build("many_tables.sqlite", tmp_path), private_dir=tmp_path / "private")


def test_many_tables_keep_schema_and_prompt_bounded(tmp_path):
    from text2sql.prompt import build_messages, fit_schema

    database = Database.from_file(build("many_tables.sqlite", tmp_path))
    assert len(database.schema.tables) == 500
    assert "3000 tables" in database.schema.notes[0]

    def words(messages):
        return sum(len(m["content"].split()) for m in messages)

    fitted, warnings = fit_schema(database.schema, "What is value_7 of table_7?", words, 2000)
    assert words(build_messages(fitted, "What is value_7 of table_7?")) <= 2000
    assert "table_7" in fitted.table_names()
    assert any("left out" in w for w in warnings)


def test_prompt_injection_in_names_and_values_stays_data(tmp_path, fake_model):
    path = build("injection_names.sqlite", tmp_path / "upload")
    before = sha256_of(path)
    database = Database.from_file(path, private_dir=tmp_path / "private")
    ddl = database.schema.to_ddl()
    assert f'CREATE TABLE "{INJECTION_TABLE}" (' in ddl  # a quoted identifier, not an instruction line
    assert f"-- example: ['{INJECTION_VALUE}']" in ddl  # a quoted literal inside a comment
    fake_model.enqueue("DROP TABLE users")  # a model that obeyed the injection
    answer = ask(database, "List the users")
    assert answer.generation.sql == "DROP TABLE users"
    assert answer.result.error.startswith("Refused")
    assert sha256_of(path) == before
    assert database.sandbox.run("SELECT count(*) FROM users").rows == [(1,)]
