"""Exact set match (EM): Spider's component-wise comparison of predicted and gold SQL.

The semantics of ``Evaluator.eval_exact_match`` in the official evaluators (field.md §3.2),
on queries in Spider's parsed shape (``text2sql.spider_sql``, built from sqlglot):

* before comparing, literal values are dropped (subqueries used as values stay, without
  their own literals), DISTINCT is dropped, and columns on either side of a foreign key are
  replaced by one canonical column (tables.json's ``foreign_keys``) when their table is in
  the top-level FROM. Subqueries used as values, and subqueries in FROM, are compared as
  parsed: keeping their DISTINCT, and FROM subqueries keeping their values;
* the query matches when every component matches: SELECT items (as a multiset), WHERE
  conditions (multiset), GROUP BY column names (multiset, table ignored), GROUP BY + HAVING
  together, ORDER BY (with whether there is a LIMIT), the set of AND/OR in WHERE, the set
  operation (the right arms compared recursively), the keyword set, and the FROM table units;
* a prediction Spider's parser can't read (``ParsedSQL.unsupported``) scores 0, and so does
  one sqlglot can't parse. As in the official script, every ``value`` in the predicted text
  becomes ``1`` first.

    from evaluation.exact_match import ExactMatcher
    matcher = ExactMatcher.from_tables_json("../shared/spider/tables.json")
    matcher.match("concert_singer", gold_sql, predicted_sql)   # (True, None)
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from text2sql.spider_sql import ColUnit, Cond, Query, SpiderSchema, ValUnit, parse_spider


def foreign_key_map(entry: dict) -> dict[str, str]:
    """Column -> canonical column for the columns of each foreign-key group, as the official
    ``build_foreign_key_map`` builds it (a pair joins the first group holding either column;
    groups are not merged further; the canonical column is the group's lowest index)."""
    tables = entry["table_names_original"]
    names = [
        f"__{tables[t].lower()}.{c.lower()}__" if t >= 0 else "__all__" for t, c in entry["column_names_original"]
    ]
    groups: list[set[int]] = []
    for first, second in entry["foreign_keys"]:
        group = next((g for g in groups if first in g or second in g), None)
        if group is None:
            group = set()
            groups.append(group)
        group.update((first, second))
    mapping = {}
    for group in groups:
        canonical = names[min(group)]
        for index in group:
            mapping[names[index]] = canonical
    return mapping


@dataclasses.dataclass(frozen=True)
class _Canon:
    """How columns are rewritten in one top-level query and its set-operation arms."""

    valid: frozenset[str]
    kmap: dict

    def col(self, unit: ColUnit | None) -> ColUnit | None:
        if unit is None:
            return None
        column = self.kmap.get(unit.column, unit.column) if unit.column in self.valid else unit.column
        return ColUnit(unit.agg, column, None)

    def val(self, unit: ValUnit) -> ValUnit:
        return ValUnit(unit.op, self.col(unit.left), self.col(unit.right))

    def condition(self, condition: tuple) -> tuple:
        return tuple(
            Cond(c.negated, c.op, self.val(c.left), *(without_values(v) for v in (c.val1, c.val2)))
            if isinstance(c, Cond)
            else c
            for c in condition
        )

    def query(self, query: Query) -> Query:
        return dataclasses.replace(
            query,
            select=tuple((agg, self.val(v)) for agg, v in query.select),
            select_distinct=None,
            join_conds=self.condition(query.join_conds),
            where=self.condition(query.where),
            group_by=tuple(self.col(c) for c in query.group_by),
            having=self.condition(query.having),
            order=(query.order[0], tuple(self.val(v) for v in query.order[1])) if query.order else None,
            set_op=(query.set_op[0], self.query(query.set_op[1])) if query.set_op else None,
        )


def without_values(value):
    """A condition value as the official rebuild leaves it: literals and columns become None,
    a subquery loses its own condition values (recursively) but nothing else."""
    if not isinstance(value, Query):
        return None

    def strip(condition: tuple) -> tuple:
        return tuple(
            Cond(c.negated, c.op, c.left, without_values(c.val1), without_values(c.val2)) if isinstance(c, Cond) else c
            for c in condition
        )

    return dataclasses.replace(
        value,
        join_conds=strip(value.join_conds),
        where=strip(value.where),
        having=strip(value.having),
        set_op=(value.set_op[0], without_values(value.set_op[1])) if value.set_op else None,
    )


def canonical(query: Query, schema: SpiderSchema, kmap: dict) -> Query:
    tables = [name.strip("_") for kind, name in query.tables if kind == "table_unit"]
    valid = frozenset(f"__{t}.{c}__" for t in tables for c in schema.columns.get(t, ()))
    return _Canon(valid, kmap).query(query)


# ---------------------------------------------------------------------------
# Comparing two canonical queries


def _units(condition: tuple) -> list[Cond]:
    return [c for c in condition if isinstance(c, Cond)]


def keywords(query: Query) -> set[str]:
    found = set()
    for name, present in (
        ("where", query.where),
        ("group", query.group_by),
        ("having", query.having),
        ("order", query.order),
        ("limit", query.limit),
    ):
        if present:
            found.add(name)
    if query.order:
        found.add(query.order[0])
    if query.set_op:
        found.add(query.set_op[0])
    conditions = query.join_conds + query.where + query.having
    if "or" in conditions:
        found.add("or")
    units = _units(conditions)
    found.update(k for k, present in (("not", any(c.negated for c in units)),) if present)
    found.update(op for op in ("in", "like") if any(c.op == op for c in units))
    return found


def _group_names(query: Query) -> Counter:
    return Counter(c.column.split(".")[1] if "." in c.column else c.column for c in query.group_by)


def component_matches(pred: Query, gold: Query) -> dict[str, bool]:
    """Each official component: True when it scores F1 = 1."""
    group_and_having = (not pred.group_by and not gold.group_by) or (
        bool(pred.group_by)
        and bool(gold.group_by)
        and [c.column for c in pred.group_by] == [c.column for c in gold.group_by]
        and pred.having == gold.having
    )
    order = (pred.order is None and gold.order is None) or (
        gold.order is not None and pred.order == gold.order and pred.limit == gold.limit
    )
    pred_op, gold_op = pred.set_op, gold.set_op
    set_operation = (pred_op is None and gold_op is None) or (
        pred_op is not None
        and gold_op is not None
        and pred_op[0] == gold_op[0]
        and queries_match(pred_op[1], gold_op[1])
    )
    return {
        "select": Counter(pred.select) == Counter(gold.select),
        "where": Counter(_units(pred.where)) == Counter(_units(gold.where)),
        "group (no having)": _group_names(pred) == _group_names(gold),
        "group": group_and_having,
        "order": order,
        "and/or": set(pred.where[1::2]) == set(gold.where[1::2]),
        "set operation": set_operation,
        "keywords": keywords(pred) == keywords(gold),
    }


def queries_match(pred: Query, gold: Query) -> bool:
    if not all(component_matches(pred, gold).values()):
        return False
    return not gold.tables or Counter(pred.tables) == Counter(gold.tables)


# ---------------------------------------------------------------------------


class ExactMatcher:
    """EM for the databases of one tables.json."""

    def __init__(self, entries: list[dict]):
        self.schemas = {e["db_id"]: SpiderSchema.from_tables_json_entry(e) for e in entries}
        self.kmaps = {e["db_id"]: foreign_key_map(e) for e in entries}

    @classmethod
    def from_tables_json(cls, path: str | Path) -> ExactMatcher:
        return cls(json.loads(Path(path).read_text()))

    def parse(self, db_id: str, sql: str) -> tuple[Query | None, str | None]:
        """The canonical query, or None and why Spider's parser would refuse it."""
        schema = self.schemas[db_id]
        try:
            parsed = parse_spider(sql, schema)
        except Exception as error:  # sqlglot raises several error types for text that isn't SQL
            return None, f"unparseable: {str(error).splitlines()[0]}"
        if parsed.unsupported:
            return None, "outside Spider's SQL subset: " + "; ".join(parsed.unsupported[:3])
        return canonical(parsed.query, schema, self.kmaps[db_id]), None

    def match(self, db_id: str, gold_sql: str, predicted_sql: str) -> tuple[bool, str | None]:
        """(exact set match, why the prediction couldn't be compared or None)."""
        gold, problem = self.parse(db_id, gold_sql)
        if gold is None:
            raise ValueError(f"Gold SQL outside Spider's subset ({problem}): {gold_sql}")
        predicted, problem = self.parse(db_id, predicted_sql.replace("value", "1"))
        if predicted is None:
            return False, problem
        return queries_match(predicted, gold), None
