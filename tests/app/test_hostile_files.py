"""The hostile database corpus (tests/hostile_files.py) through every upload surface of the app:
the UI's upload handler (schema, then Run), and gradio_client's /run_sql and /ask with
handle_file against the served app (fake models). Each file is refused with its reason or read
safely; the uploaded file, its folder and the app's private folders keep nothing; the server
stays healthy. The core and the CLI's --db are in tests/test_hostile_files.py.

    python -m pytest tests/app/test_hostile_files.py -v
"""

import os
import re
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import sha256_of
from tests.hostile_files import CORPUS, build
from webapp.handlers import Handlers
from webapp.service import GenerationLimit, Service
from webapp.sources import UPLOAD, ExampleDatabases, Workspace

REFUSED = [name for name, (_, outcome, _) in CORPUS.items() if outcome == "refused"]
HANDLED = [name for name, (_, outcome, _) in CORPUS.items() if outcome == "handled"]
COUNT_TABLES = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"


def reason(name: str) -> str:
    """What the refusal must say (the corpus leaves the words open for damaged files)."""
    return CORPUS[name][2] or "can't read this file|damaged"



@pytest.fixture(autouse=True)
def short_introspection(monkeypatch):
    """slow_generated_column.sqlite is refused when checking it overruns: sooner than 10 s + 2 s here."""
    monkeypatch.setenv("TEXT2SQL_INTROSPECTION_TIMEOUT_S", "8")  # many_tables reads in 1-4 s, loaded
    monkeypatch.setenv("TEXT2SQL_QUERY_KILL_AFTER_S", "1")

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Each hostile file alone in its own folder, as a user would have it."""
    root = tmp_path_factory.mktemp("corpus")
    return {name: build(name, root / name.replace(".", "_")) for name in CORPUS}


@pytest.fixture(scope="module")
def client(server_url):
    return Client(server_url, verbose=False)


@pytest.fixture
def handlers(fake_models, tmp_path):
    return Handlers(Service(limit=GenerationLimit(1, 4)), ExampleDatabases(tmp_path / "examples"),
                    tmp_path / "uploads", tmp_path / "results")


def snapshot(folder):
    return {name: sha256_of(folder / name) for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("name", CORPUS)
def test_the_ui_upload_handler(handlers, corpus, name):
    path = corpus[name]
    before = snapshot(path.parent)
    workspace, summary, ddl = handlers.show_schema(UPLOAD, None, str(path), "", None)
    _, table, status, _, *_ = handlers.run(UPLOAD, None, str(path), "", COUNT_TABLES, workspace)
    if name in REFUSED:
        assert summary.startswith("❌") and re.search(reason(name), summary) and ddl == ""
        assert status.startswith("❌") and table["visible"] is False
        assert list(workspace.folder.glob("*.sqlite")) == []  # no private copy of a refused file
    else:
        assert summary.startswith(f"**{name}**") and "CREATE TABLE" in ddl
        assert status.startswith("✅ 1 row") and table["visible"] is True
        assert len(list(workspace.folder.glob("*.sqlite"))) == 1
    assert snapshot(path.parent) == before
    Workspace.close_if_any(workspace)
    assert not workspace.folder.exists()


@pytest.mark.parametrize("name", CORPUS)
def test_the_run_sql_endpoint(client, server_url, corpus, work_dir, name):
    path = corpus[name]
    before = snapshot(path.parent)
    if name in REFUSED:
        with pytest.raises(AppError, match=reason(name)):
            client.predict(database=handle_file(path), sql=COUNT_TABLES, api_name="/run_sql")
    else:
        result = client.predict(database=handle_file(path), sql=COUNT_TABLES, api_name="/run_sql")
        assert result["error"] is None and result["rows"][0][0] >= 1
    assert snapshot(path.parent) == before
    assert list((work_dir / "uploads").iterdir()) == []  # the request's private copy is gone
    assert httpx.get(server_url + "health").json()["status"] == "ok"


@pytest.mark.parametrize("name", CORPUS)
def test_the_ask_endpoint(client, server_url, fake_models, corpus, work_dir, name):
    path = corpus[name]
    before = snapshot(path.parent)
    fake_models.enqueue(COUNT_TABLES)
    if name in REFUSED:
        with pytest.raises(AppError, match=reason(name)):
            client.predict(database=handle_file(path), question="How many tables?", mode="greedy", api_name="/ask")
    else:
        result = client.predict(database=handle_file(path), question="How many tables?", mode="greedy", api_name="/ask")
        assert result["sql"] == COUNT_TABLES and result["error"] is None
    assert snapshot(path.parent) == before
    assert list((work_dir / "uploads").iterdir()) == []
    assert httpx.get(server_url + "health").json()["status"] == "ok"


def test_gradio_cache_holds_the_uploads_unchanged_and_nothing_beside_them(client, corpus):
    """Gradio keeps its own copy of each upload (until upload_retention_s): those copies must be
    byte-identical to what was sent, with no -wal/-shm/-journal file next to them."""
    for path in corpus.values():
        try:
            client.predict(database=handle_file(path), sql=COUNT_TABLES, api_name="/run_sql")
        except AppError:
            pass
    uploaded = {name: sha256_of(path) for name, path in corpus.items()}
    seen = 0
    for folder, _, files in os.walk(os.environ["GRADIO_TEMP_DIR"]):
        for file in files:
            assert not file.endswith(("-wal", "-shm", "-journal")), file
            if file in uploaded and sha256_of(Path(folder, file)) == uploaded[file]:
                seen += 1
    assert seen >= len(uploaded)
