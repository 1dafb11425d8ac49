"""Exact set match on the Spider-shaped parse: checked against the official parses in dev.json,
and hand-made cases for each component.

    python -m pytest tests/test_exact_match.py -v
"""

import json

import pytest

from evaluation.exact_match import ExactMatcher, foreign_key_map
from tests.conftest import SPIDER
from text2sql.spider_sql import ColUnit, Query, SpiderSchema, Value, parse_spider


needs_spider = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not found")

AGGS = ("none", "max", "min", "count", "sum", "avg")
UNIT_OPS = ("none", "-", "+", "*", "/")
WHERE_OPS = ("not", "between", "=", ">", "<", ">=", "<=", "!=", "in", "like", "is", "exists")


class OfficialForm:
    """Our parse written the way dev.json stores the official parser's output (integer ids)."""

    def __init__(self, entry: dict):
        tables = [t.lower() for t in entry["table_names_original"]]
        self.tables = {f"__{t}__": i for i, t in enumerate(tables)}
        self.columns = {"__all__": 0}
        for i, (t, c) in enumerate(entry["column_names_original"]):
            if t >= 0:
                self.columns[f"__{tables[t]}.{c.lower()}__"] = i

    def col(self, unit):
        return None if unit is None else [AGGS.index(unit.agg or "none"), self.columns[unit.column], unit.distinct]

    def val_unit(self, unit):
        return [UNIT_OPS.index(unit.op or "none"), self.col(unit.left), self.col(unit.right)]

    def value(self, value):
        if isinstance(value, Query):
            return self.sql(value)
        if isinstance(value, ColUnit):
            return self.col(value)
        return None if value is None else value.value

    def condition(self, condition):
        return [
            c
            if isinstance(c, str)
            else [c.negated, WHERE_OPS.index(c.op), self.val_unit(c.left), self.value(c.val1), self.value(c.val2)]
            for c in condition
        ]

    def sql(self, q: Query) -> dict:
        result = {
            "select": [q.select_distinct, [[AGGS.index(a or "none"), self.val_unit(v)] for a, v in q.select]],
            "from": {
                "table_units": [[k, self.tables[t] if k == "table_unit" else self.sql(t)] for k, t in q.tables],
                "conds": self.condition(q.join_conds),
            },
            "where": self.condition(q.where),
            "groupBy": [self.col(c) for c in q.group_by],
            "having": self.condition(q.having),
            "orderBy": [q.order[0], [self.val_unit(v) for v in q.order[1]]] if q.order else [],
            "limit": q.limit,
            "intersect": None,
            "union": None,
            "except": None,
        }
        if q.set_op:
            result[q.set_op[0]] = self.sql(q.set_op[1])
        return result


def official_values_normalised(sql):
    """dev.json's parse with values written as ours are: strings lower-case without quotes, limit a flag."""
    if isinstance(sql, dict):
        result = {k: official_values_normalised(v) for k, v in sql.items()}
        if "limit" in sql:
            result["limit"] = sql["limit"] is not None
        return result
    if isinstance(sql, list):
        return [official_values_normalised(v) for v in sql]
    if isinstance(sql, str) and sql.startswith('"') and sql.endswith('"'):
        return sql[1:-1].lower()
    if isinstance(sql, str) and sql.startswith("'") and sql.endswith("'"):
        return sql[1:-1].lower()
    return sql


@needs_spider
def test_our_parse_of_every_dev_gold_query_equals_the_official_parse():
    entries = {e["db_id"]: e for e in json.loads((SPIDER / "tables.json").read_text())}
    dev = json.loads((SPIDER / "dev.json").read_text())
    differing = []
    for index, item in enumerate(dev):
        entry = entries[item["db_id"]]
        parsed = parse_spider(item["query"], SpiderSchema.from_tables_json_entry(entry))
        assert not parsed.unsupported, (index, parsed.unsupported)
        ours = json.loads(json.dumps(OfficialForm(entry).sql(parsed.query)))
        if ours != official_values_normalised(item["sql"]):
            differing.append(index)
    assert differing == []


@needs_spider
def test_every_gold_query_matches_itself():
    matcher = ExactMatcher.from_tables_json(SPIDER / "tables.json")
    dev = json.loads((SPIDER / "dev.json").read_text())
    assert all(matcher.match(e["db_id"], e["query"], e["query"]) == (True, None) for e in dev)


# ---------------------------------------------------------------------------
# Hand-made cases on a small schema with a foreign key

ENTRY = {
    "db_id": "music",
    "table_names_original": ["singer", "concert", "singer_in_concert"],
    "column_names_original": [
        [-1, "*"],
        [0, "singer_id"],
        [0, "name"],
        [0, "age"],
        [0, "country"],
        [1, "concert_id"],
        [1, "year"],
        [1, "stadium"],
        [2, "concert_id"],
        [2, "singer_id"],
    ],
    "foreign_keys": [[9, 1], [8, 5]],
}
MATCHER = ExactMatcher([ENTRY])


def em(gold, pred):
    return MATCHER.match("music", gold, pred)[0]


def test_foreign_key_groups_map_to_their_lowest_column():
    assert foreign_key_map(ENTRY) == {
        "__singer_in_concert.singer_id__": "__singer.singer_id__",
        "__singer.singer_id__": "__singer.singer_id__",
        "__singer_in_concert.concert_id__": "__concert.concert_id__",
        "__concert.concert_id__": "__concert.concert_id__",
    }


@pytest.mark.parametrize(
    "gold, pred",
    [
        # values are ignored
        ("SELECT name FROM singer WHERE age > 30", "SELECT name FROM singer WHERE age > 99"),
        ("SELECT name FROM singer WHERE country = 'France'", 'SELECT name FROM singer WHERE country = "Spain"'),
        # SELECT items and WHERE conditions are sets; DISTINCT is ignored; aliases don't matter
        ("SELECT name, age FROM singer", "SELECT DISTINCT age, name FROM singer"),
        (
            "SELECT name FROM singer WHERE age > 1 AND country = 'x'",
            "SELECT name FROM singer WHERE country = 'y' AND age > 2",
        ),
        (
            "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id",
            "SELECT A.name FROM singer_in_concert AS B JOIN singer AS A ON B.singer_id = A.singer_id",
        ),
        # a column on either side of a foreign key is the same column
        (
            "SELECT T1.singer_id FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id",
            "SELECT T2.singer_id FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id",
        ),
        # GROUP BY compares column names without their table
        (
            "SELECT count(*) FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T1.singer_id",
            "SELECT count(*) FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T2.singer_id",
        ),
        # the LIMIT value doesn't matter, its presence does
        ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "SELECT name FROM singer ORDER BY age DESC LIMIT 3"),
    ],
)
def test_equivalent_forms_match(gold, pred):
    assert em(gold, pred)


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("SELECT name FROM singer", "SELECT age FROM singer"),
        ("SELECT count(*) FROM singer", "SELECT count(name) FROM singer"),
        ("SELECT name FROM singer WHERE age > 30", "SELECT name FROM singer WHERE age >= 30"),
        ("SELECT name FROM singer WHERE age > 1 AND age < 9", "SELECT name FROM singer WHERE age > 1 OR age < 9"),
        ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "SELECT name FROM singer ORDER BY age LIMIT 1"),
        ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "SELECT name FROM singer ORDER BY age DESC"),
        (
            "SELECT name FROM singer ORDER BY age DESC LIMIT 1",
            "SELECT name FROM singer WHERE age = (SELECT max(age) FROM singer)",
        ),
        ("SELECT name FROM singer", "SELECT name FROM singer AS T1 JOIN concert AS T2"),  # tables differ
        (
            "SELECT name FROM singer INTERSECT SELECT name FROM singer",
            "SELECT name FROM singer UNION SELECT name FROM singer",
        ),
        ("SELECT name FROM singer WHERE country = 'x'", "SELECT name FROM singer WHERE country LIKE 'x'"),
        (
            "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)",
            "SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert)",
        ),
        (
            "SELECT country FROM singer GROUP BY country HAVING count(*) > 1",
            "SELECT country FROM singer GROUP BY country",
        ),
    ],
)
def test_different_queries_do_not_match(gold, pred):
    assert not em(gold, pred)


@pytest.mark.parametrize(
    "pred",
    [
        "SELECT count(*) AS n FROM singer",  # column alias
        "SELECT count(*) FROM singer s",  # table alias without AS
        "SELECT count(*) FROM singer WHERE country IS NULL",
        "SELECT count(*) FROM singer WHERE country IN ('a', 'b')",
        "SELECT count(*) FROM singer LEFT JOIN concert",
        "SELECT count(*) FROM singer WHERE age <> 3",
        "SELECT count(*) FROM singer WHERE nope = 3",  # unknown column
        "this is not SQL",
    ],
)
def test_what_spiders_parser_cannot_read_scores_zero_with_a_reason(pred):
    matched, reason = MATCHER.match("music", "SELECT count(*) FROM singer", pred)
    assert not matched and reason


def test_a_trailing_order_by_after_a_set_operation_belongs_to_the_last_arm():
    query = parse_spider("SELECT a FROM t UNION SELECT b FROM u ORDER BY b LIMIT 1").query
    assert query.order is None and not query.limit
    assert query.set_op[0] == "union" and query.set_op[1].order is not None and query.set_op[1].limit


def test_double_quoted_words_in_conditions_are_string_values():
    query = parse_spider('SELECT a FROM t WHERE b = "France"').query
    assert query.where[0].val1 == Value("france")
