"""End to end on the real embedded Qwen2.5-Coder-0.5B (and, asked by name, the 1.5B): `python
app.py`'s app, served, asked through gradio_client and REST (about 45 s on 2 CPU cores, once
the model is converted).

    python -m pytest -m slow tests/app/test_slow_app.py -v
"""

import sqlite3

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.app.conftest import serve
from tests.conftest import build_db


pytestmark = pytest.mark.slow


def test_the_app_answers_with_the_embedded_model(example_dbs, tmp_path):
    import app

    _, served, _ = app.create(results_dir=tmp_path / "results", work_dir=tmp_path / "work")  # packaged registry
    with serve(served) as url:
        answer = Client(url, verbose=False).predict(
            database=handle_file(example_dbs["shop"]), question="What are the three most expensive products?",
            api_name="/ask",
        )
        assert answer["model"] == "qwen2.5-coder-0.5b-spider" and answer["error"] is None, answer
        # the fine-tuned model selects only what was asked (Spider's style): the names, first
        assert [row[0] for row in answer["rows"]] == ["Burr grinder", "Milk frother", "Pour-over dripper"], answer

        # another registry model, by name: the 1.5B (llama.cpp, its own embedded GGUF)
        larger = Client(url, verbose=False).predict(
            database=handle_file(example_dbs["shop"]), question="How many customers are there?",
            model="qwen2.5-coder-1.5b", api_name="/ask",
        )
        assert larger["model"] == "qwen2.5-coder-1.5b" and larger["error"] is None, larger
        with sqlite3.connect(example_dbs["shop"]) as conn:
            assert [tuple(row) for row in larger["rows"]] == conn.execute("SELECT count(*) FROM customers").fetchall()

        response = httpx.post(url + "generate_sql", timeout=300, json={
            "schema": "Table: users\nColumns: id, name, age", "question": "How many users are older than 30?"
        })
    assert response.status_code == 200 and response.json()["valid"] is True, response.json()
    assert set(response.json()) == {"sql", "execution_time_ms", "model", "valid", "error", "decoding"}
    users = build_db(tmp_path / "users.sqlite", "CREATE TABLE users (id, name, age);"
                     "INSERT INTO users VALUES (1, 'Ann', 25), (2, 'Bob', 41), (3, 'Cy', 33);")
    with sqlite3.connect(users) as conn:
        assert conn.execute(response.json()["sql"]).fetchall() == [(2,)]
