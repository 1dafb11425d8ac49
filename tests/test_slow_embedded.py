"""End to end on the real embedded Qwen2.5-Coder-0.5B (the PyPI GGUF: as it is for llama.cpp,
the default engine here; dequantised on first use for transformers) and the shipped LoRA, and
on the embedded Qwen2.5-Coder-1.5B (llama.cpp only).

    python -m pytest -m slow -v
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import SPIDER

CONCERT = SPIDER / "database" / "concert_singer" / "concert_singer.sqlite"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CONCERT.is_file(), reason="needs ../shared/spider"),
]


def test_embedded_qwen_answers_a_spider_question_correctly():
    """Spider dev #0: 'How many singers do we have?' -> a query whose result equals the gold's."""
    from text2sql.pipeline import Database, ask
    from text2sql.sandbox import Sandbox

    database = Database.from_file(CONCERT)
    answer = ask(database, "How many singers do we have?")
    gold = Sandbox.from_file(CONCERT).run("SELECT count(*) FROM singer")
    assert answer.result.error is None, answer.generation.raw
    assert answer.result.rows == gold.rows == [(6,)]
    assert not answer.generation.chatty


def test_cli_ask_with_the_embedded_default_prints_sql_and_6():
    """The default, Qwen2.5-Coder-1.5B: its 22 PyPI parts joined, verified and run by llama.cpp as they are."""
    result = subprocess.run(
        [sys.executable, "-m", "text2sql.cli", "ask", "--json", "--db", str(CONCERT), "How many singers do we have?"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["rows"] == [[6]]
    assert payload["model"] == "qwen2.5-coder-1.5b"
    assert payload["sql"].lower().startswith("select count(*)")
    from text2sql.engine import load_generator

    generator = load_generator()
    assert generator.engine.startswith("llama.cpp") and "1.5B Q4_K" in generator.engine
    assert "embedded copy of Qwen/Qwen2.5-Coder-1.5B-Instruct" in generator.origin


def test_the_fine_tuned_model_runs_on_llama_cpp_with_the_shipped_adapter():
    from text2sql.engine import load_generator

    generator = load_generator("qwen2.5-coder-0.5b-spider")
    assert generator.engine.startswith("llama.cpp") and "Q4_K" in generator.engine
    assert "LoRA adapter" in generator.origin


def test_both_engines_feed_the_fine_tuned_model_the_same_tokens():
    """The prompt, token for token: llama.cpp (GGUF tokenizer and chat template) against the
    transformers backend (tokenizer converted from the same GGUF), on a real Spider schema."""
    from text2sql.engine import load_generator
    from text2sql.pipeline import Database
    from text2sql.prompt import build_messages, build_repair_messages

    schema = Database.from_file(CONCERT).schema
    cases = [
        build_messages(schema, "How many singers do we have?"),
        build_messages(schema, "  Show the name and the release year of the song by the youngest singer. "),
        build_repair_messages(schema, "How many singers?", "SELECT count(*) FROM singers", "no such table: singers"),
    ]
    llama = load_generator("qwen2.5-coder-0.5b-spider")
    reference = load_generator("qwen2.5-coder-0.5b-spider-transformers")
    assert reference.engine.startswith("transformers")
    for messages in cases:
        assert llama.token_ids(messages) == reference.token_ids(messages)


def test_the_fine_tuned_model_answers_through_the_cli_by_name():
    """Spider dev #0 with ``--model qwen2.5-coder-0.5b-spider``: the 0.5B and our LoRA adapter."""
    result = subprocess.run(
        [sys.executable, "-m", "text2sql.cli", "ask", "--json", "--model", "qwen2.5-coder-0.5b-spider", "--db", str(CONCERT),
         "How many singers do we have?"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "qwen2.5-coder-0.5b-spider"
    assert payload["rows"] == [[6]], payload