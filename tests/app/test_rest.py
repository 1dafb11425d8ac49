"""The REST routes, in process with FastAPI's TestClient (fake models).

    python -m pytest tests/app/test_rest.py -v
"""

import sqlite3

import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import GENERATED
from tests.conftest import build_db


ORIGINAL_EXAMPLE = {"schema": "Table: users\nColumns: id, name, age", "question": "How many users are older than 30?"}


@pytest.fixture(scope="module")
def client(app_parts):
    _, app, _ = app_parts
    with TestClient(app) as client:
        yield client


def test_sql_put_right_says_so(client, fake_models):
    fake_models.enqueue("SELECT COUNT(*) FROM users WHERE birthyear > 1990")  # misspelt
    example = {"schema": "Table: users\nColumns: id, name, birth_year", "question": "How many users were born after 1990?"}
    body = client.post("/generate_sql", json=example).json()
    assert body["sql"] == "SELECT COUNT(*) FROM users WHERE birth_year > 1990" and body["valid"] is True
    assert body["warnings"] == ["Names the model got wrong were put right: birthyear -> birth_year"]


def test_the_original_contract(client, fake_models, tmp_path):
    """The original service's example, posted as is: sql/execution_time_ms/model as before, now
    with whether the SQL is valid and how it was written, and the SQL runs on a database with
    that schema."""
    fake_models.enqueue("```sql\nSELECT COUNT(*) FROM users WHERE age > 30;\n```")
    response = client.post("/generate_sql", json=ORIGINAL_EXAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == GENERATED and body["valid"] is True and body["error"] is None
    assert body["decoding"] == {"mode": "auto", "k": 8, "temperature": 0.8, "seed": 0, "answered_by": "greedy",
                                "escalation": None}
    assert isinstance(body["execution_time_ms"], float) and body["execution_time_ms"] >= 0
    assert body["model"] == "fake"
    assert body["sql"] == "SELECT COUNT(*) FROM users WHERE age > 30" and body["warnings"] == []
    prompt = fake_models.history[-1][1]["content"]
    assert "CREATE TABLE users" in prompt and prompt.endswith("Question: How many users are older than 30?")

    db = build_db(tmp_path / "users.sqlite", "CREATE TABLE users (id, name, age);"
                  "INSERT INTO users VALUES (1, 'Ann', 25), (2, 'Bob', 41), (3, 'Cy', 33);")
    with sqlite3.connect(db) as conn:
        assert conn.execute(body["sql"]).fetchall() == [(2,)]


def test_best_of_k_mode_keeps_the_contract_and_returns_the_most_likely_valid_query(client, fake_models):
    fake_models.enqueue(("SELECT COUNT(*) FROM user WHERE age > 30", -0.1), ("SELECT count(*) FROM users WHERE age > 30", -0.4),
                        ("SELECT count(*) FROM users", -0.9), ("SELECT count(*) FROM users WHERE agee > 30", -0.2))
    response = client.post("/generate_sql", json={**ORIGINAL_EXAMPLE, "mode": "best-of-k"})
    assert response.status_code == 200, response.text
    assert response.json()["sql"] == "SELECT count(*) FROM users WHERE age > 30"
    assert set(response.json()) == GENERATED
    assert fake_models.calls == [("sample", 1, 4)]


def test_greedy_mode(client, fake_models):
    fake_models.enqueue("SELECT 2")
    assert client.post("/generate_sql", json={**ORIGINAL_EXAMPLE, "mode": "greedy"}).json()["sql"] == "SELECT 2"
    assert fake_models.calls == [("generate", 1, 1)]


def test_auto_is_the_default_and_says_why_it_escalated(client, fake_models):
    fake_models.enqueue("SELECT count(*) FROM members WHERE age > 30",  # the greedy answer: no such table
                        *["SELECT count(*) FROM users WHERE age > 30"] * 8)
    body = client.post("/generate_sql", json=ORIGINAL_EXAMPLE).json()
    assert fake_models.calls == [("sample", 1, 1), ("sample", 1, 8)]
    assert body["sql"] == "SELECT count(*) FROM users WHERE age > 30" and body["valid"] is True
    assert body["decoding"]["answered_by"] == "best-of-k"
    assert body["decoding"]["escalation"].startswith("failed: no such table: members")


def test_sql_that_does_not_compile_is_returned_with_valid_false_and_the_reason(client, fake_models):
    fake_models.enqueue("SELECT count(*) FROM users WHERE agee > 30")
    body = client.post("/generate_sql", json={**ORIGINAL_EXAMPLE, "mode": "greedy"}).json()
    assert body["sql"] == "SELECT count(*) FROM users WHERE agee > 30"
    assert (body["valid"], body["error"]) == (False, "SQLite error: no such column: agee")


def test_an_example_database_gives_rows_on_request(client, fake_models):
    assert {"name": "shop", "title": client.get("/databases").json()[0]["title"]} in client.get("/databases").json()
    fake_models.enqueue("SELECT name FROM customers WHERE city = 'Lyon' ORDER BY id")
    body = client.post("/generate_sql", json={"database": "shop", "question": "Customers in Lyon?", "execute": True,
                                              "mode": "greedy"}).json()
    assert body["valid"] is True and body["columns"] == ["name"]
    assert body["rows"] == [["Amira Haddad"], ["Chen Wei"]] and body["truncated"] is False


def test_a_named_model(client, fake_models):
    response = client.post("/generate_sql", json={**ORIGINAL_EXAMPLE, "model": "fake-b"})
    assert response.status_code == 200 and response.json()["model"] == "fake-b"


@pytest.mark.parametrize(
    "payload, status, message",
    [
        ({**ORIGINAL_EXAMPLE, "model": "gpt-9"}, 400, "Unknown model 'gpt-9'. Available: fake, fake-b, fake-c."),
        ({**ORIGINAL_EXAMPLE, "question": "   "}, 400, "Type a question first."),
        ({**ORIGINAL_EXAMPLE, "schema": "Table: users\nColumns: id\nthis is not a schema"}, 400, "Line 3"),
        ({**ORIGINAL_EXAMPLE, "schema": ""}, 400, "Paste a schema first"),
        ({**ORIGINAL_EXAMPLE, "schema": "Table: t\nColumns: " + "c, " * 70_000 + "d"}, 400,
         "The schema is 210,019 characters long; the limit is 200,000."),
        ({**ORIGINAL_EXAMPLE, "question": "why " * 600}, 400, "The question is 2,400 characters long; the limit is 2,000."),
        ({"question": "How many users?"}, 400, "Give either schema (CREATE TABLE statements"),
        ({**ORIGINAL_EXAMPLE, "database": "shop"}, 400, "Give either schema"),
        ({"database": "nope", "question": "How many?"}, 400, "There is no example database called 'nope'"),
        ({"schema": "Table: t\nColumns: a"}, 422, "Bad request: question: Field required"),
        ({"schema": "Table: t\nColumns: a", "question": 42}, 422,
         "Bad request: question: Input should be a valid string, not a number"),
        ({**ORIGINAL_EXAMPLE, "mode": "beam"}, 422,
         "Bad request: mode: Input should be 'greedy', 'best-of-k' or 'auto'"),
        ({**ORIGINAL_EXAMPLE, "execute": "yes"}, 422, "Bad request: execute: Input should be a valid boolean, not text"),
        ({**ORIGINAL_EXAMPLE, "sql": "SELECT 1"}, 422,
         "Bad request: unknown field 'sql' (the fields are: schema, database, question, model, mode, execute)"),
    ],
)
def test_bad_input_is_a_4xx_with_a_json_error(client, payload, status, message):
    response = client.post("/generate_sql", json=payload)
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert response.json()["error"].startswith(message) and response.json()["error"]


def test_a_body_that_is_not_json_is_a_422_with_a_json_error(client):
    response = client.post("/generate_sql", content=b"schema=x", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "Bad request: the body is not valid JSON (Expecting value)"


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(client, monkeypatch):
    body = b'{"schema": "Table: t\\nColumns: a", "question": "' + b"x" * 2_100_000 + b'"}'
    response = client.post("/generate_sql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"error": "The request body is larger than the 2,000,000-byte limit."}
    chunked = client.post("/generate_sql", content=iter([body[:1_000_000], body[1_000_000:]]),
                          headers={"content-type": "application/json"})  # no Content-Length
    assert chunked.status_code == 413 and chunked.json()["error"].startswith("The request body is larger")
    gradio_call = client.post("/gradio_api/call/run_sql", content=body, headers={"content-type": "application/json"})
    assert gradio_call.status_code == 413


def test_a_schema_is_parsed_only_once_admitted(client, app_parts, fake_models, monkeypatch):
    """Parsing 200,000 characters of DDL costs seconds of CPU: when the queue is full, REST says
    503 without parsing anything."""
    from text2sql import pipeline

    parsed = []
    monkeypatch.setattr(pipeline, "parse_schema_text", lambda text: parsed.append(text))
    response = _post_while_busy(client, app_parts)
    assert response.status_code == 503 and parsed == []


def _post_while_busy(client, app_parts):
    """POST the original example while the one generation slot is taken and nothing may wait."""
    _, _, service = app_parts
    saved = service.limit
    service.limit = type(saved)(running=1, waiting=0)
    try:
        with service.limit.slot():
            return client.post("/generate_sql", json=ORIGINAL_EXAMPLE)
    finally:
        service.limit = saved


def test_nested_schema_text_is_a_400(client):
    nested = "CREATE TABLE t (a INTEGER CHECK (" + "(" * 5000 + "a" + ")" * 5000 + "));"
    response = client.post("/generate_sql", json={**ORIGINAL_EXAMPLE, "schema": nested})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


def test_busy_is_a_503(client, app_parts, fake_models):
    response = _post_while_busy(client, app_parts)
    assert response.status_code == 503 and response.json()["error"].startswith("The server is busy")


def test_health_and_models(client):
    assert client.get("/health").json() == {"status": "ok", "model_loaded": True, "default_model": "fake", "error": None}
    models = client.get("/models").json()
    assert [m["name"] for m in models] == ["fake", "fake-b", "fake-c"]
    assert models[0] == {"name": "fake", "title": "Fake model", "default": True, "loaded": True,
                         "base": "local folder .", "adapter": None}


def test_health_is_503_until_the_default_model_is_loaded(fake_models, tmp_path):
    import app

    _, served, service = app.create(results_dir=tmp_path / "results", work_dir=tmp_path / "work")
    with TestClient(served) as client:
        loading = client.get("/health")
        assert loading.status_code == 503
        assert loading.json() == {"status": "loading", "model_loaded": False, "default_model": "fake", "error": None}
        assert service.warm_up() is not None
        assert client.get("/health").status_code == 200


def test_health_says_why_when_the_default_model_cannot_load(fake_models, tmp_path, monkeypatch):
    import app
    from text2sql.errors import ModelUnavailableError
    from webapp import service as service_module

    _, served, service = app.create(results_dir=tmp_path / "results", work_dir=tmp_path / "work")
    monkeypatch.setattr(service_module, "load_generator", lambda name: (_ for _ in ()).throw(
        ModelUnavailableError("Can't load the base model of fake: no weights.")))
    assert service.warm_up() is None
    with TestClient(served) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "failed" and response.json()["error"].startswith("Can't load the base model")


def test_openapi_docs_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assets = [part.split('"')[0] for part in page.text.split('="')[1:] if part.startswith(("/docs-assets", "http"))]
    assert assets and all(asset.startswith("/docs-assets/") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text


def test_openapi_docs_describe_the_contract(client):
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/generate_sql"]["post"]
    request = spec["components"]["schemas"]["GenerateSQLRequest"]
    assert set(request["properties"]) == {"schema", "database", "question", "model", "mode", "execute"}
    assert request["properties"]["mode"]["enum"] == ["greedy", "best-of-k", "auto"]
    assert request["properties"]["mode"]["default"] == "auto"
    assert set(request["required"]) == {"question"} and request["additionalProperties"] is False
    response = spec["components"]["schemas"]["GenerateSQLResponse"]
    assert set(response["required"]) == {"sql", "execution_time_ms", "model", "valid", "error", "decoding", "warnings"}
    assert set(route["responses"]) == {"200", "400", "413", "422", "503"}
    assert route["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert set(spec["paths"]) >= {"/generate_sql", "/health", "/models"}


def test_the_ui_is_served_by_the_same_app(client):
    assert client.get("/").status_code == 200
    assert client.get("/config").json()["title"] == "text2sql: ask a SQLite database in plain English"
    assert client.get("/gradio_api/info").json()["named_endpoints"].keys() == {
        "/generate_sql", "/run_sql", "/ask", "/compare"
    }


def test_the_apps_own_files_are_deleted_when_the_server_stops(fake_models, tmp_path, monkeypatch):
    import tempfile

    import app

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _, served, _ = app.create(results_dir=tmp_path / "results")
    [work_dir] = tmp_path.glob("text2sql-app-*")
    assert (work_dir / "examples" / "shop.sqlite").is_file()
    with TestClient(served) as client:
        assert client.get("/models").status_code == 200
    assert not work_dir.exists()
