"""The app unchanged with a default model behind an OpenAI-compatible server (a real one on
loopback: llama-cpp-python's, serving SmolLM2; tests/conftest.py ``smollm2_server``): REST
in process, then gradio_client against the app served by uvicorn, as `python app.py` serves it.

    python -m pytest tests/app/test_served_model.py -v
"""

import pytest
from fastapi.testclient import TestClient
from gradio_client import Client

from tests.app.conftest import GENERATED, serve


SCHEMA = "Table: users\nColumns: id, name, age"
QUESTION = "How many users are older than 30?"


@pytest.fixture
def app_parts(served_registry, tmp_path):
    import app

    return app.create(results_dir=tmp_path / "results", work_dir=tmp_path / "work")


def test_rest_and_gradio_client_answer_with_the_served_model(app_parts, smollm2_server):
    _, served_app, service = app_parts
    with TestClient(served_app) as client:
        assert client.get("/health").json()["default_model"] == "served"
        response = client.post("/generate_sql", json={"schema": SCHEMA, "question": QUESTION})
        assert response.status_code == 200, response.text
        assert set(response.json()) == GENERATED and response.json()["model"] == "served"
        assert response.json()["decoding"]["mode"] == "auto"  # REST's default, through the server too
        best = client.post("/generate_sql", json={"schema": SCHEMA, "question": QUESTION, "mode": "best-of-k"})
        assert best.status_code == 200, best.text
    assert smollm2_server in service.origins["served"]
    with serve(served_app) as url:
        result = Client(url, verbose=False).predict(SCHEMA, QUESTION, api_name="/generate_sql")
    assert result["model"] == "served" and isinstance(result["sql"], str)
