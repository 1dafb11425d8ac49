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
        answer = Client(url, verbose=False).predict(  # the default, the 1.5B (llama.cpp, its embedded GGUF)
            database=handle_file(example_dbs["shop"]), question="How many customers are there?", api_name="/ask",
        )
        assert answer["model"] == "qwen2.5-coder-1.5b" and answer["error"] is None, answer
        with sqlite3.connect(example_dbs["shop"]) as conn:
            assert [tuple(row) for row in answer["rows"]] == conn.execute("SELECT count(*) FROM customers").fetchall()

        # another registry model, by name: the fine-tuned 0.5B
        tuned = Client(url, verbose=False).predict(
            database=handle_file(example_dbs["shop"]), question="What are the three most expensive products?",
            model="qwen2.5-coder-0.5b-spider", api_name="/ask",
        )
        assert tuned["model"] == "qwen2.5-coder-0.5b-spider" and tuned["error"] is None, tuned
        # the fine-tuned model selects only what was asked (Spider's style): the names, first
        assert [row[0] for row in tuned["rows"]] == ["Burr grinder", "Milk frother", "Pour-over dripper"], tuned

        response = httpx.post(url + "generate_sql", timeout=300, json={
            "schema": "Table: users\nColumns: id, name, age", "question": "How many users are older than 30?"
        })
    assert response.status_code == 200 and response.json()["valid"] is True, response.json()
    assert set(response.json()) == {"sql", "execution_time_ms", "model", "valid", "error", "decoding", "warnings"}
    users = build_db(tmp_path / "users.sqlite", "CREATE TABLE users (id, name, age);"
                     "INSERT INTO users VALUES (1, 'Ann', 25), (2, 'Bob', 41), (3, 'Cy', 33);")
    with sqlite3.connect(users) as conn:
        assert conn.execute(response.json()["sql"]).fetchall() == [(2,)]
