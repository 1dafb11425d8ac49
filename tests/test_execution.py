"""Execution match (EX): one hand-made case per rule of the test-suite evaluator, on a real SQLite file.

python -m pytest tests/test_execution.py -v
"""

import time

import pytest

from evaluation.execution import execution_match, order_matters
from text2sql.results import candidate_permutations, results_match
from tests.conftest import build_db


FIXTURE = """
CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER, net_worth REAL);
INSERT INTO singer VALUES
    (1, 'Ann', 'France', 30, 1.5),
    (2, 'Bob', 'France', 40, NULL),
    (3, 'Cy', 'Spain', 30, 2.25),
    (4, 'Di', NULL, 25, 0.1);
CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER);
INSERT INTO concert VALUES (1, 1, 2014), (2, 1, 2015), (3, 3, 2014);
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_db(tmp_path_factory.mktemp("exec") / "music.sqlite", FIXTURE)


def ex(db, gold, pred, **kwargs):
    return execution_match(db, gold, pred, **kwargs).match


def test_identical_queries_match(db):
    assert ex(db, "SELECT name FROM singer", "SELECT name FROM singer")


def test_columns_may_be_permuted(db):
    assert ex(db, "SELECT name, age FROM singer", "SELECT age, name FROM singer")
    assert ex(
        db,
        "SELECT id, name, country, age, net_worth FROM singer",
        "SELECT net_worth, age, country, name, id FROM singer",
    )
    assert not ex(db, "SELECT name, age FROM singer", "SELECT name, id FROM singer")


def test_row_order_is_ignored_without_order_by_in_the_gold(db):
    assert ex(db, "SELECT name FROM singer", "SELECT name FROM singer ORDER BY name DESC")


def test_row_order_matters_when_the_gold_has_order_by(db):
    assert ex(db, "SELECT name FROM singer ORDER BY age, name", "SELECT name FROM singer ORDER BY age, name")
    assert not ex(db, "SELECT name FROM singer ORDER BY age, name", "SELECT name FROM singer ORDER BY age DESC, name")


def test_order_by_is_a_substring_test_on_the_gold(db):
    # an ORDER BY inside a subquery makes order matter too, as in the official script
    assert order_matters("SELECT name FROM (SELECT name FROM singer ORDER BY age)")
    assert not order_matters("SELECT name FROM singer ORDER  BY age")  # two spaces: not the substring


def test_duplicates_count_rows_are_bags(db):
    assert ex(db, "SELECT age FROM singer", "SELECT age FROM singer")
    assert not ex(db, "SELECT age FROM singer", "SELECT age FROM singer UNION ALL SELECT 40")
    # gold 30, 40, 30; prediction 30, 40, 40: same length, same set of values, different bags
    gold = "SELECT age FROM singer WHERE age != 25"
    assert ex(db, gold, "SELECT DISTINCT age FROM singer WHERE age != 25 UNION ALL SELECT 30")
    assert not ex(db, gold, "SELECT DISTINCT age FROM singer WHERE age != 25 UNION ALL SELECT 40")


def test_distinct_is_kept(db):
    assert not ex(db, "SELECT age FROM singer", "SELECT DISTINCT age FROM singer")
    assert ex(db, "SELECT DISTINCT country FROM singer", "SELECT country FROM singer GROUP BY country")


def test_nulls_compare_equal_to_nulls(db):
    assert ex(db, "SELECT country FROM singer", "SELECT country FROM singer")
    assert ex(db, "SELECT net_worth, name FROM singer", "SELECT name, net_worth FROM singer")
    assert not ex(db, "SELECT country FROM singer", "SELECT coalesce(country, '') FROM singer")


def test_floats_must_be_equal_integers_equal_their_float_value(db):
    assert ex(db, "SELECT avg(age) FROM singer", "SELECT sum(age) * 1.0 / count(*) FROM singer")
    assert ex(db, "SELECT max(age) FROM singer", "SELECT max(age) * 1.0 FROM singer")  # 40 == 40.0
    assert not ex(db, "SELECT avg(net_worth) FROM singer", "SELECT round(avg(net_worth), 2) FROM singer")


def test_two_empty_results_match_even_with_different_columns(db):
    assert ex(db, "SELECT name FROM singer WHERE age > 100", "SELECT id, age FROM singer WHERE age < 0")
    assert not ex(db, "SELECT name FROM singer WHERE age > 100", "SELECT name FROM singer")


def test_a_failing_prediction_scores_zero_with_its_error(db):
    outcome = execution_match(db, "SELECT name FROM singer", "SELECT nme FROM singer")
    assert not outcome.match and not outcome.executed and "no such column" in outcome.error
    assert not execution_match(db, "SELECT name FROM singer", "").executed
    assert not execution_match(db, "SELECT name FROM singer", "DELETE FROM singer").executed


def test_runaway_prediction_is_stopped_by_the_time_limit(db):
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    started = time.monotonic()
    outcome = execution_match(db, "SELECT count(*) FROM singer", runaway, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert not outcome.match and "Stopped" in outcome.error


def test_the_official_operator_spacing_is_closed_up(db):
    assert ex(db, "SELECT name FROM singer WHERE age >= 30", "SELECT name FROM singer WHERE age > = 30")


def test_permutation_candidates_keep_only_column_orders_that_fit():
    gold = [(1, "a", 2.0), (2, "b", 3.0)]
    predicted = [("a", 2.0, 1), ("b", 3.0, 2)]
    assert list(candidate_permutations(gold, predicted)) == [(2, 0, 1)]
    assert results_match(gold, predicted, ordered=True)
    assert not results_match(gold, list(reversed(predicted)), ordered=True)
    assert results_match(gold, list(reversed(predicted)), ordered=False)
