"""The shared hostile SQL corpus through the app's surfaces: the UI's Run handler, the /run_sql
client endpoint, a model writing it (/ask), and REST /generate_sql, which must only ever
generate (fake models; the uploaded file must never change).

    python -m pytest tests/app/test_hostile_sql.py -v
"""

import os
import time

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.conftest import AWKWARD_SQL, build_db, sha256_of
from tests.hostile_sql import HOSTILE
from text2sql.sandbox import Sandbox
from webapp.handlers import Handlers
from webapp.service import GenerationLimit, Service
from webapp.sources import UPLOAD, ExampleDatabases


TIME_LIMIT_S = 1.0


@pytest.fixture(autouse=True)
def short_limits(monkeypatch):
    monkeypatch.setenv("TEXT2SQL_QUERY_TIMEOUT_S", str(TIME_LIMIT_S))
    monkeypatch.setenv("TEXT2SQL_QUERY_KILL_AFTER_S", "1")  # a worker stuck in one C call dies at 2 s


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    return build_db(tmp_path_factory.mktemp("user") / "people.db", AWKWARD_SQL)


@pytest.fixture(scope="module")
def handlers(fake_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("handlers")
    return Handlers(Service(limit=GenerationLimit(1, 1)), ExampleDatabases(folder / "examples"), folder / "uploads",
                    folder / "results")


@pytest.fixture(scope="module")
def client(server_url):
    return Client(server_url, verbose=False)


def unchanged(upload, before_hash, before_files):
    return sha256_of(upload) == before_hash and sorted(os.listdir(upload.parent)) == before_files


@pytest.mark.parametrize("sql", HOSTILE)
def test_the_run_handler_refuses_or_stops_it(handlers, upload, sql):
    before = sha256_of(upload), sorted(os.listdir(upload.parent))
    started = time.monotonic()
    _, table, status, csv, *_ = handlers.run(UPLOAD, None, str(upload), "", sql, None)
    assert time.monotonic() - started < TIME_LIMIT_S + 2
    assert status.startswith(("❌ Refused", "❌ Stopped", "❌ SQLite error")), status
    assert table["visible"] is False and csv["visible"] is False
    assert unchanged(upload, *before)


@pytest.mark.parametrize("sql", HOSTILE)
def test_the_run_sql_endpoint_refuses_or_stops_it(client, upload, sql):
    before = sha256_of(upload), sorted(os.listdir(upload.parent))
    result = client.predict(database=handle_file(upload), sql=sql, api_name="/run_sql")
    assert result["error"].startswith(("Refused", "Stopped", "SQLite error")), result
    assert result["rows"] == []
    assert unchanged(upload, *before)


@pytest.mark.parametrize("sql", HOSTILE)
def test_a_model_writing_it_through_ask_is_refused_stopped_or_cut_to_a_read(client, fake_models, upload, sql):
    """The model's output goes through the SQL post-processor first: it may cut a second
    statement off ("SELECT 1; DELETE ..." runs as "SELECT 1"); whatever is left is sandboxed."""
    before = sha256_of(upload), sorted(os.listdir(upload.parent))
    fake_models.enqueue(sql)
    result = client.predict(database=handle_file(upload), question="Do it", mode="greedy", api_name="/ask")
    assert result["raw"] == sql
    if result["error"] is None:
        assert result["sql"] != sql  # only what was left after the cut ran
    else:
        assert result["error"].startswith(("Refused", "Stopped", "SQLite error", "The model did not write")), result
    assert unchanged(upload, *before)


@pytest.mark.parametrize("sql", HOSTILE)
def test_rest_generate_sql_returns_it_as_text_and_only_compiles_it(server_url, fake_models, monkeypatch, sql):
    """REST has only the pasted schema (an empty in-memory database): the model's SQL is checked
    there with EXPLAIN, in the sandbox, and never run."""
    calls = []
    execute = Sandbox._execute
    monkeypatch.setattr(Sandbox, "_execute", lambda self, *args, **kwargs: calls.append(kwargs["explain"]) or execute(
        self, *args, **kwargs))
    fake_models.enqueue(sql)
    response = httpx.post(server_url + "generate_sql", json={"schema": "CREATE TABLE person (id, name, born)",
                                                              "question": "Do it", "mode": "greedy"}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["valid"] is (body["error"] is None)
    assert all(calls)  # EXPLAIN only (none when nothing was left to compile)
