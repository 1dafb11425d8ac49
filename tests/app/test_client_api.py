"""The served app (uvicorn, as `python app.py` runs it) driven through gradio_client (fake models).

    python -m pytest tests/app/test_client_api.py -v
"""

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.app.conftest import GENERATED
from tests.conftest import sha256_of


@pytest.fixture(scope="module")
def client(server_url):
    return Client(server_url, verbose=False)


def test_exactly_the_four_endpoints_are_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate_sql", "/run_sql", "/ask", "/compare"}
    assert [p["parameter_name"] for p in endpoints["/generate_sql"]["parameters"]] == [
        "schema", "question", "model", "database", "mode", "execute"
    ]
    assert [p["parameter_name"] for p in endpoints["/ask"]["parameters"]][-1] == "mode"
    assert "defaults to:   )" not in client.view_api(print_info=False, return_format="str")  # no blank defaults
    assert [p["parameter_name"] for p in endpoints["/compare"]["parameters"]][-1] == "mode"


def test_run_sql_on_an_uploaded_file(client, example_dbs):
    shop = example_dbs["shop"]
    before = sha256_of(shop)
    result = client.predict(database=handle_file(shop), sql="SELECT name FROM customers WHERE city = 'Lyon' ORDER BY id",
                            api_name="/run_sql")
    assert result["columns"] == ["name"] and result["rows"] == [["Amira Haddad"], ["Chen Wei"]]
    assert result["truncated"] is False and result["error"] is None
    assert sha256_of(shop) == before


def test_run_sql_refuses_writes_as_a_result_and_leaves_no_copies(client, example_dbs, work_dir):
    result = client.predict(database=handle_file(example_dbs["school"]), sql="DROP TABLE students", api_name="/run_sql")
    assert result["error"].startswith("Refused: only read-only SELECT queries") and result["rows"] == []
    assert (work_dir / "uploads").is_dir() and list((work_dir / "uploads").iterdir()) == []


def test_run_sql_on_schema_text_checks_the_query(client):
    ok = client.predict(schema="Table: users\nColumns: id, name, age", sql="SELECT name FROM users", api_name="/run_sql")
    assert ok["error"] is None and ok["rows"] == []
    bad = client.predict(schema="Table: users\nColumns: id, name, age", sql="SELECT salary FROM users",
                         api_name="/run_sql")
    assert bad["error"] == "SQLite error: no such column: salary"


def test_generate_sql_from_schema_text(client, fake_models):
    fake_models.enqueue("SELECT count(*) FROM users WHERE age > 30")
    result = client.predict("Table: users\nColumns: id, name, age", "How many users are older than 30?",
                            api_name="/generate_sql")
    assert result["sql"] == "SELECT count(*) FROM users WHERE age > 30"
    assert set(result) == GENERATED and result["model"] == "fake"
    assert result["valid"] is True and result["error"] is None
    assert result["decoding"] == {"mode": "auto", "k": 8, "temperature": 0.8, "seed": 0, "answered_by": "greedy",
                                  "escalation": None}


def test_generate_sql_from_a_file_with_a_chosen_model(client, fake_models, example_dbs):
    fake_models.enqueue("SELECT title FROM courses")
    result = client.predict(database=handle_file(example_dbs["school"]), question="List the courses",
                            model="fake-c", mode="greedy", api_name="/generate_sql")
    assert (result["sql"], result["model"], result["valid"]) == ("SELECT title FROM courses", "fake-c", True)
    assert set(result) == GENERATED  # no rows unless asked for
    assert "CREATE TABLE enrollments" in fake_models.history[-1][1]["content"]


def test_generate_sql_says_when_its_sql_fails_and_returns_rows_on_request(client, fake_models, example_dbs):
    fake_models.enqueue("SELECT titel FROM courses")
    failed = client.predict(database=handle_file(example_dbs["school"]), question="List the courses",
                            mode="greedy", api_name="/generate_sql")
    assert failed["valid"] is False and failed["error"] == "SQLite error: no such column: titel"
    fake_models.enqueue("SELECT count(*) FROM courses")
    ran = client.predict(database=handle_file(example_dbs["school"]), question="How many courses?",
                         mode="greedy", execute=True, api_name="/generate_sql")
    assert ran["valid"] is True and ran["rows"] == [[7]] and ran["columns"] == ["count(*)"]
    assert ran["truncated"] is False


def test_ask_generates_and_runs(client, fake_models, example_dbs):
    fake_models.enqueue("Here you go: SELECT count(*) FROM flights WHERE origin = 'LHR'")
    result = client.predict(database=handle_file(example_dbs["flights"]), question="How many flights leave Heathrow?",
                            api_name="/ask")
    assert result["sql"] == "SELECT count(*) FROM flights WHERE origin = 'LHR'" and result["candidates"] == []
    assert result["chatty"] is True and result["raw"].startswith("Here you go")
    assert result["rows"] == [[3]] and result["error"] is None


def test_ask_best_of_k_returns_the_candidates(client, fake_models, example_dbs):
    fake_models.enqueue(("SELECT count(*) FROM flights WHERE origin = 'LHR'", -1.0),
                        ("SELECT count(*) FROM flight_log WHERE origin = 'LHR'", -0.1),
                        ("SELECT count(id) FROM flights WHERE origin = 'LHR'", -2.0), ("SELECT 7", -0.5))
    result = client.predict(database=handle_file(example_dbs["flights"]), question="How many flights leave Heathrow?",
                            mode="best-of-k", api_name="/ask")
    assert result["sql"] == "SELECT count(*) FROM flights WHERE origin = 'LHR'" and result["rows"] == [[3]]
    assert [c["votes"] for c in result["candidates"]] == [2, 0, 2, 1] and result["repair"] is None
    assert result["candidates"][1]["error"].startswith("no such table: flight_log")


def test_generate_sql_best_of_k_keeps_the_contract(client, fake_models):
    fake_models.enqueue("SELECT count(*) FROM users WHERE agee > 30", "SELECT count(*) FROM users WHERE age > 30",
                        "SELECT count(*) FROM users", "SELECT 1")
    result = client.predict("Table: users\nColumns: id, name, age", "How many users are older than 30?", mode="best-of-k",
                            api_name="/generate_sql")
    assert set(result) == GENERATED and result["decoding"]["answered_by"] == "best-of-k"
    assert result["sql"] == "SELECT count(*) FROM users WHERE age > 30"  # the most likely that compiles


def test_an_unknown_mode_is_an_app_error(client):
    with pytest.raises(AppError, match="Unknown decoding mode 'fast'"):
        client.predict("Table: users\nColumns: id", "How many?", mode="fast", api_name="/generate_sql")


def test_compare_two_models(client, fake_models, example_dbs):
    fake_models.enqueue("SELECT count(*) FROM airports", "SELECT count(code) FROM airports")
    result = client.predict(database=handle_file(example_dbs["flights"]), question="How many airports?",
                            models=["fake", "fake-b"], api_name="/compare")
    assert result["agree"] is True
    assert [(r["model"], r["rows"]) for r in result["results"]] == [("fake", [[7]]), ("fake-b", [[7]])]


def test_bad_input_raises_an_app_error_with_the_reason(client, tmp_path):
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("hello")
    with pytest.raises(AppError, match="not a SQLite database"):
        client.predict(database=handle_file(not_sqlite), sql="SELECT 1", api_name="/run_sql")
    with pytest.raises(AppError, match="Give a schema"):
        client.predict(question="How many?", api_name="/generate_sql")
    with pytest.raises(AppError, match="Pick 2 to 4 models"):
        client.predict(schema="Table: t\nColumns: a", question="q", models=["fake"], api_name="/compare")


def test_an_upload_over_the_size_limit_is_refused_by_the_server(server_url, tmp_path):
    """max_file_size is set from TEXT2SQL_MAX_UPLOAD_BYTES when the app is built (50 MB here):
    a 51 MB upload is turned away before it reaches any handler."""
    big = tmp_path / "big.sqlite"
    with open(big, "wb") as handle:
        handle.write(b"SQLite format 3\x00")
        handle.truncate(51 * 2**20)
    with open(big, "rb") as handle:
        response = httpx.post(server_url + "gradio_api/upload", files={"files": ("big.sqlite", handle)}, timeout=60)
    assert response.status_code == 413
    assert "maximum allowed size of 52428800 bytes" in response.text


def test_rest_is_served_on_the_same_port(server_url, fake_models):
    response = httpx.post(server_url + "generate_sql", json={"schema": "Table: t\nColumns: a", "question": "All a?"})
    assert response.status_code == 200 and set(response.json()) == GENERATED
    assert httpx.get(server_url + "health").json()["status"] == "ok"


WRONG_TYPES = {"a number": 42, "a list": ["x"], "an object": {"a": 1}, "true/false": True}
TEXT_PARAMETERS = [("/generate_sql", "schema"), ("/generate_sql", "question"), ("/generate_sql", "model"),
                   ("/generate_sql", "mode"), ("/run_sql", "schema"), ("/run_sql", "sql"), ("/ask", "schema"),
                   ("/ask", "question"), ("/ask", "model"), ("/ask", "mode"), ("/compare", "schema"),
                   ("/compare", "question"), ("/compare", "mode")]


@pytest.mark.parametrize("endpoint, parameter", TEXT_PARAMETERS)
@pytest.mark.parametrize("kind", ["a file", *WRONG_TYPES])
def test_every_text_argument_of_a_wrong_type_is_refused_in_words(client, example_dbs, endpoint, parameter, kind):
    """e.g. a file where /run_sql expects schema text: an AppError naming the argument, not a crash."""
    value = handle_file(example_dbs["shop"]) if kind == "a file" else WRONG_TYPES[kind]
    with pytest.raises(AppError, match=f"^'{parameter}' must be text, not {kind}\\.$"):
        client.predict(**{parameter: value}, api_name=endpoint)


@pytest.mark.parametrize("endpoint", ["/generate_sql", "/run_sql", "/ask", "/compare"])
@pytest.mark.parametrize("value, kind", [("shop.sqlite", "text"), (7, "a number"), ([1], "a list")])
def test_a_database_that_is_not_a_file_is_refused_in_words(client, endpoint, value, kind):
    with pytest.raises(AppError, match=f"^'database' must be a SQLite file sent with handle_file\\(path\\), not {kind}"):
        client.predict(database=value, api_name=endpoint)


@pytest.mark.parametrize("parameter, value, message", [
    ("execute", "yes", "'execute' must be true or false, not text."),
    ("execute", 1, "'execute' must be true or false, not a number."),
])
def test_execute_must_be_true_or_false(client, parameter, value, message):
    with pytest.raises(AppError, match=f"^{message}$"):
        client.predict(schema="Table: t\nColumns: a", question="All a?", **{parameter: value}, api_name="/generate_sql")


@pytest.mark.parametrize("value, kind", [("fake", "text"), (["fake", 2], "a list"), (3, "a number")])
def test_compare_models_must_be_a_list_of_names(client, value, kind):
    with pytest.raises(AppError, match=f"^'models' must be a list of model names, not {kind}\\.$"):
        client.predict(schema="Table: t\nColumns: a", question="All a?", models=value, api_name="/compare")
