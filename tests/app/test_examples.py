"""The example databases: built from their SQL, and every example question's reference query runs.

    python -m pytest tests/app/test_examples.py -v
"""

import pytest

from examples.build import EXAMPLES_DIR, build, build_all, list_examples, main
from text2sql.pipeline import Database
from text2sql.sandbox import Sandbox


EXAMPLES = list_examples()


def test_every_example_has_its_sql_and_three_questions():
    assert [e.name for e in EXAMPLES] == ["shop", "school", "flights"]
    for example in EXAMPLES:
        assert example.sql_path.is_file() and example.title
        assert len(example.questions) == 3


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_every_reference_query_runs_and_answers(example, tmp_path):
    sandbox = Sandbox.from_file(build(example, tmp_path))
    for item in example.questions:
        result = sandbox.run(item.sql)
        assert result.error is None, (item.question, result.error)
        assert result.rows and all(value is not None for row in result.rows for value in row), item.question


def test_example_schemas_have_keys_the_model_can_see(tmp_path):
    paths = build_all(tmp_path)
    shop = Database.from_file(paths["shop"]).schema
    assert shop.table("order_items").primary_key == ("order_id", "product_id")
    assert {fk.other_table for fk in shop.table("order_items").foreign_keys} == {"orders", "products"}
    flights = Database.from_file(paths["flights"]).schema
    assert [fk.other_table for fk in flights.table("flights").foreign_keys].count("airports") == 2


def test_rebuilding_replaces_the_file_and_leaves_nothing_else(tmp_path):
    first = build(EXAMPLES[0], tmp_path).read_bytes()
    second = build(EXAMPLES[0], tmp_path).read_bytes()
    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == ["shop.sqlite"]


def test_the_build_script(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flights.sqlite", "school.sqlite", "shop.sqlite"]
    assert "built" in capsys.readouterr().out
    assert not list(EXAMPLES_DIR.glob("*.partial"))
