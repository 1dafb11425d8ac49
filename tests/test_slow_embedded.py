"""End to end on the real embedded Qwen2.5-Coder-0.5B (converted from the PyPI GGUF on first use).

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


def test_cli_ask_with_the_embedded_model_prints_sql_and_6():
    result = subprocess.run(
        [sys.executable, "-m", "text2sql.cli", "ask", "--json", "--db", str(CONCERT), "How many singers do we have?"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["rows"] == [[6]]
    assert payload["model"] == "qwen2.5-coder-0.5b-spider"
    assert payload["sql"].lower().startswith("select count(*)")
