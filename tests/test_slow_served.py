"""The fine-tuned model behind a real OpenAI-compatible server: llama-cpp-python's, started by
``text2sql.llama_server`` with the packaged Qwen GGUF and our LoRA converted to a GGUF adapter
(``text2sql.lora_gguf``), asked through serving/llamacpp/models.yaml's entry, against the
in-process llama.cpp backend on the same files.

    python -m pytest tests/test_slow_served.py -v
"""

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import SPIDER
from text2sql import engine
from text2sql.registry import Registry

CONCERT = SPIDER / "database" / "concert_singer" / "concert_singer.sqlite"
SERVED = Path(__file__).resolve().parents[1] / "serving" / "llamacpp" / "models.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CONCERT.is_file(), reason="needs ../shared/spider"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """serving/llamacpp/models.yaml's entry, pointed at a server started for this module."""
    from text2sql.llama_server import running

    registry = Registry.load(SERVED)
    spec = registry.get()
    key_env = spec.endpoint["api_key_env"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(key_env, secrets.token_hex(16))
        log = tmp_path_factory.mktemp("qwen-server") / "server.log"
        with running(spec.endpoint["model"], threads=0, api_key_env=key_env, log=log) as base_url:
            endpoint = {**spec.endpoint, "base_url": base_url}
            yield Registry.from_dict({"models": {spec.name: {
                "backend": "openai", "base": vars(spec.base), "adapter": vars(spec.adapter),
                "endpoint": endpoint, "generation": spec.generation}}}), spec.name


def test_the_served_fine_tuned_model_answers_as_in_process(served):
    """Spider dev #0 through the server: the same prompt tokens as in-process (counted by the
    server), the same SQL, and the gold's result."""
    import httpx

    from text2sql.pipeline import Database, answer_batch
    from text2sql.prompt import build_messages
    from text2sql.sandbox import Sandbox

    registry, name = served
    generator = engine.load_generator(name, registry)
    local = engine.load_generator("qwen2.5-coder-0.5b-spider")
    database = Database.from_file(CONCERT)
    messages = build_messages(database.schema, "How many singers do we have?")
    usage = httpx.post(f"{generator.endpoint.base_url}/chat/completions", timeout=300,
                       headers={"Authorization": f"Bearer {os.environ[generator.endpoint.api_key_env]}"},
                       json={"model": generator.endpoint.model, "messages": messages, "max_tokens": 1, "temperature": 0})
    assert usage.json()["usage"]["prompt_tokens"] == local.count_tokens(messages) == generator.count_tokens(messages)
    answer = answer_batch(generator, database, ["How many singers do we have?"])[0]
    assert answer.generation.sql == answer_batch(local, database, ["How many singers do we have?"])[0].generation.sql
    assert answer.result.rows == Sandbox.from_file(CONCERT).run("SELECT count(*) FROM singer").rows == [(6,)]
