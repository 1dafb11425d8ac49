"""Spider hardness levels: exact official counts on dev, and hand-made cases for each rule.

    python -m pytest tests/test_hardness.py -v
"""

from collections import Counter

import pytest

from tests.conftest import SPIDER
from text2sql.hardness import LEVELS, component1, component2, count_others, hardness
from text2sql.spider import Spider
from text2sql.spider_sql import parse_spider


needs_spider = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not found")


@needs_spider
def test_official_counts_on_all_of_dev():
    counts = Counter(hardness(e.query) for e in Spider(SPIDER).examples("dev"))
    assert [counts[level] for level in LEVELS] == [248, 446, 174, 166]


@needs_spider
def test_counts_on_the_dev_items_with_a_database():
    spider = Spider(SPIDER)
    counts = Counter(hardness(e.query) for e in spider.examples("dev") if spider.has_database(e.db_id))
    assert [counts[level] for level in LEVELS] == [232, 416, 160, 164]


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT count(*) FROM singer", "easy"),
        ("SELECT name FROM singer WHERE age > 20", "easy"),  # one component-1 keyword
        ("SELECT name, age FROM singer", "medium"),  # two SELECT items: others = 1
        ("SELECT name FROM singer WHERE age > 20 ORDER BY age", "medium"),  # comp1 = 2
        ("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.sid WHERE T2.year = 2014", "medium"),
        ("SELECT name FROM singer WHERE age > 20 AND country = 'France' ORDER BY age LIMIT 1", "hard"),  # comp1 = 3
        ("SELECT name FROM singer INTERSECT SELECT name FROM actor", "hard"),  # a bare set operation
        ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "hard"),  # one nested query
        # the ORDER BY belongs to the right arm, which is not inspected
        ("SELECT name FROM singer WHERE age > 1 INTERSECT SELECT name FROM actor ORDER BY name", "hard"),
        ("SELECT name FROM singer WHERE age > 1 AND x = 2 INTERSECT SELECT name FROM actor", "extra"),
        ("SELECT name, age FROM singer WHERE id IN (SELECT sid FROM concert)", "extra"),  # nested + others
        ("SELECT name FROM singer WHERE a IN (SELECT x FROM t) AND b IN (SELECT y FROM u)", "extra"),  # 2 nested
        ("SELECT a FROM t WHERE b = 1 OR c LIKE '%x%' GROUP BY a ORDER BY a", "extra"),  # comp1 = 5
    ],
)
def test_hand_made_levels(sql, expected):
    assert hardness(sql) == expected


def counts(sql):
    query = parse_spider(sql).query
    return component1(query), component2(query), count_others(query)


def test_joins_or_and_like_count_in_component_1_but_having_does_not():
    assert counts("SELECT a FROM t JOIN u JOIN v") == (2, 0, 0)
    assert counts("SELECT a FROM t WHERE b = 1 OR c LIKE 'x'") == (3, 0, 1)
    assert counts("SELECT a FROM t GROUP BY a HAVING count(*) > 1") == (1, 0, 0)
    assert counts("SELECT a FROM t LIMIT 3") == (1, 0, 0)


def test_subquery_in_from_is_a_table_not_a_nested_query():
    assert counts("SELECT count(*) FROM (SELECT a FROM t)") == (0, 0, 0)
    assert counts("SELECT count(*) FROM t JOIN (SELECT a FROM u)") == (1, 0, 0)


def test_set_operations_count_once_and_only_the_left_arm_is_inspected():
    assert counts("SELECT a FROM t UNION SELECT a FROM u UNION SELECT a FROM v") == (0, 1, 0)
    # the trailing ORDER BY belongs to the right arm, as in Spider's parser
    assert counts("SELECT a FROM t EXCEPT SELECT a FROM u ORDER BY a LIMIT 1") == (0, 1, 0)


def test_the_official_aggregate_count_quirks_are_kept():
    # two aggregates in SELECT: others gets 1 for aggregates and 1 for two items
    assert counts("SELECT max(a), min(a) FROM t") == (0, 0, 2)
    # a NOT-ed WHERE condition counts as an aggregate
    assert counts("SELECT count(*) FROM t WHERE a NOT IN (SELECT a FROM u)")[2] == 1
    assert counts("SELECT count(*) FROM t WHERE a IN (SELECT a FROM u)")[2] == 0
    # HAVING's own aggregate is not counted, its AND is
    assert counts("SELECT a FROM t GROUP BY a HAVING count(*) > 1")[2] == 0
    assert counts("SELECT count(*) FROM t GROUP BY a HAVING sum(b) > 1 AND min(b) > 0")[2] == 1


def test_not_sql_is_an_error():
    with pytest.raises(Exception):
        hardness("SELECT FROM WHERE (")
