"""The text2sql command line: ask, run-sql, models (the model is a fake; see test_slow_embedded.py).

    python -m pytest tests/test_cli.py -v
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import sha256_of
from tests.hostile_sql import HOSTILE
from text2sql.cli import EXIT_QUERY, main


def test_run_sql_prints_the_table(awkward_db, capsys):
    assert main(["run-sql", "--db", str(awkward_db), "SELECT name FROM person ORDER BY id"]) == 0
    out = capsys.readouterr().out
    assert "Ann" in out and "Cy" in out and "3 rows" in out


def test_run_sql_refuses_writes_with_exit_2_and_a_reason(awkward_db, capsys):
    before = sha256_of(awkward_db)
    assert main(["run-sql", "--db", str(awkward_db), "DELETE FROM person"]) == 2
    assert "Refused" in capsys.readouterr().err
    assert sha256_of(awkward_db) == before


@pytest.mark.parametrize("sql", HOSTILE)
def test_run_sql_refuses_or_stops_every_hostile_statement(awkward_db, capsys, monkeypatch, sql):
    monkeypatch.setenv("TEXT2SQL_QUERY_TIMEOUT_S", "1")
    monkeypatch.setenv("TEXT2SQL_QUERY_KILL_AFTER_S", "1")
    before = sha256_of(awkward_db), sorted(os.listdir(awkward_db.parent))
    started = time.monotonic()
    assert main(["run-sql", "--db", str(awkward_db), sql]) == EXIT_QUERY
    assert time.monotonic() - started < 3
    assert capsys.readouterr().err.startswith(("error: Refused", "error: Stopped", "error: SQLite error"))
    assert (sha256_of(awkward_db), sorted(os.listdir(awkward_db.parent))) == before


def test_run_sql_json(awkward_db, capsys):
    assert main(["run-sql", "--db", str(awkward_db), "--json", 'SELECT "blob col", id FROM "Table With Space" WHERE id = 1']) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["columns"] == ["blob col", "id"]
    assert payload["rows"] == [["<2 bytes>", 1]]
    assert payload["truncated"] is False


def test_run_sql_on_a_pasted_schema_validates(capsys):
    assert main(["run-sql", "--schema", "Table: users\nColumns: id, name, age", "SELECT count(*) FROM users"]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["run-sql", "--schema", "Table: users\nColumns: id, name, age", "SELECT nope FROM users"]) == 2
    assert "no such column" in capsys.readouterr().err


def test_bad_inputs_exit_1_with_a_message(tmp_path, capsys):
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello")
    assert main(["run-sql", "--db", str(not_db), "SELECT 1"]) == 1
    assert "not a SQLite database" in capsys.readouterr().err
    assert main(["run-sql", "--schema", "Table: a\nColumns: x\nnonsense", "SELECT 1"]) == 1
    assert "Line 3" in capsys.readouterr().err


def test_ask_prints_sql_and_result(awkward_db, fake_model, capsys):
    fake_model.enqueue("```sql\nSELECT count(*) AS n FROM person;\n```")
    assert main(["ask", "--db", str(awkward_db), "How many people?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SELECT count(*) AS n FROM person\n")
    assert " 3" in out
    prompt = fake_model.history[-1][1]["content"]
    assert "CREATE TABLE person (" in prompt and prompt.endswith("Question: How many people?")


def test_ask_json_has_the_documented_keys(awkward_db, fake_model, capsys):
    fake_model.enqueue("Sure! SELECT name FROM person WHERE id = 2")
    assert main(["ask", "--json", "--db", str(awkward_db), "Who is person 2?"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"sql", "raw", "chatty", "model", "execution_time_ms", "columns", "rows", "truncated", "error"}
    assert payload["sql"] == "SELECT name FROM person WHERE id = 2"
    assert payload["raw"] == "Sure! SELECT name FROM person WHERE id = 2"
    assert payload["chatty"] is True and payload["model"] == "fake"
    assert payload["rows"] == [["Bob"]] and payload["error"] is None


def test_ask_with_a_schema_file_validates_the_sql(tmp_path, fake_model, capsys):
    schema_file = tmp_path / "schema.sql"
    schema_file.write_text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);")
    fake_model.enqueue("SELECT count(*) FROM users WHERE age > 30")
    assert main(["ask", "--schema", str(schema_file), "How many users are older than 30?"]) == 0
    assert capsys.readouterr().out.strip() == "SELECT count(*) FROM users WHERE age > 30"
    fake_model.enqueue("SELECT salary FROM users")
    assert main(["ask", "--schema", str(schema_file), "Salaries?"]) == 2
    assert "no such column: salary" in capsys.readouterr().err


def test_ask_when_the_model_writes_a_write_query_refuses_it(awkward_db, fake_model, capsys):
    before = sha256_of(awkward_db)
    fake_model.enqueue("DROP TABLE person")
    assert main(["ask", "--db", str(awkward_db), "Delete everything"]) == 2
    assert "Refused" in capsys.readouterr().err
    assert sha256_of(awkward_db) == before


def test_models_lists_the_registry(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-spider", "smollm2-135m",
                                         "qwen2.5-coder-0.5b-spider-transformers", "qwen2.5-coder-1.5b"]
    assert [r["default"] for r in rows] == [False, False, False, False, True]
    assert rows[3]["backend"] == "transformers" and rows[1]["backend"] in ("llama.cpp", "transformers")
    assert rows[4]["backend"] == "llama.cpp"


def test_unknown_model_is_exit_1(awkward_db, capsys):
    assert main(["ask", "--db", str(awkward_db), "--model", "nope", "q"]) == 1
    assert "Unknown model 'nope'" in capsys.readouterr().err


def test_console_script_is_installed(awkward_db):
    result = subprocess.run(
        [sys.executable, "-m", "text2sql.cli", "run-sql", "--db", str(awkward_db), "SELECT count(*) FROM person"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "1 row" in result.stdout


def test_ask_best_of_k_votes_and_says_how(awkward_db, fake_model, capsys):
    fake_model.enqueue(("SELECT name FROM person WHERE id = 1", -0.1), ("SELECT nme FROM person", -0.2),
                       ("SELECT name FROM person WHERE born > 1989", -2.0), ("SELECT name FROM person WHERE id < 2", -3.0))
    assert main(["ask", "--db", str(awkward_db), "--mode", "best-of-k", "--k", "4", "--temperature", "0.5",
                 "Who was born last?"]) == 0
    assert fake_model.calls == [("sample", 1, 4)]
    captured = capsys.readouterr()
    assert captured.out.startswith("SELECT name FROM person WHERE id = 1\n") and "Ann" in captured.out
    assert "note: Best of 4 (temperature 0.5): 3 of 4 candidates ran, 3 of them agree on this result." in captured.err


def test_ask_best_of_k_json_lists_the_candidates(awkward_db, fake_model, capsys):
    fake_model.enqueue("SELECT nme FROM person", "SELECT nmae FROM person",
                       "SELECT name FROM person WHERE id = 2", "SELECT nme FROM person")  # the last two: repairs
    assert main(["ask", "--db", str(awkward_db), "--mode", "best-of-k", "--k", "2", "--json", "Who?"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["decoding"] == {"mode": "best-of-k", "k": 2, "temperature": 0.8, "seed": 0, "answered_by": "best-of-k",
                                   "escalation": None}
    assert [c["sql"] for c in payload["candidates"]] == ["SELECT nme FROM person", "SELECT nmae FROM person"]
    assert all(c["error"].startswith("no such column") for c in payload["candidates"])
    assert payload["repair"]["sql"] == payload["sql"] == "SELECT name FROM person WHERE id = 2"
    assert payload["rows"] == [["Bob"]]


def test_ask_with_a_bad_k_exits_1(awkward_db, fake_model, capsys):
    assert main(["ask", "--db", str(awkward_db), "--mode", "best-of-k", "--k", "1", "Who?"]) == 1
    assert "Best-of-k needs k between 2 and 32, not 1." in capsys.readouterr().err


def test_ask_auto_keeps_a_greedy_answer_that_returns_rows(awkward_db, fake_model, capsys):
    fake_model.enqueue("SELECT name FROM person WHERE id = 1")
    assert main(["ask", "--db", str(awkward_db), "--mode", "auto", "--json", "Who is person 1?"]) == 0
    assert fake_model.calls == [("sample", 1, 1)]
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == [["Ann"]] and payload["candidates"] == []
    assert payload["decoding"] == {"mode": "auto", "k": 8, "temperature": 0.8, "seed": 0, "answered_by": "greedy",
                                   "escalation": None}


def test_ask_auto_escalates_when_the_greedy_sql_fails_and_says_why(awkward_db, fake_model, capsys):
    fake_model.enqueue("SELECT nme FROM person",  # greedy, then best of 2
                       ("SELECT nme FROM person", -0.1), ("SELECT name FROM person WHERE id = 2", -1.0))
    assert main(["ask", "--db", str(awkward_db), "--mode", "auto", "--k", "2", "Who is person 2?"]) == 0
    assert fake_model.calls == [("sample", 1, 1), ("sample", 1, 2)]
    captured = capsys.readouterr()
    assert captured.out.startswith("SELECT name FROM person WHERE id = 2\n") and "Bob" in captured.out
    assert ("note: Auto: the greedy answer failed: no such column: nme (not a column of person") in captured.err
    assert "so 2 candidates were voted on. Best of 2 (temperature 0.8): 1 of 2 candidates ran" in captured.err
