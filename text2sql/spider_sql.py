"""SQL in the shape Spider's own parser gives it (``process_sql.py``), built from a sqlglot parse.

Spider's hardness levels and its exact set match are defined on that shape: a query is a
SELECT list of ``(agg, val_unit)`` items, FROM table units plus join conditions, WHERE and
HAVING as flat lists ``[cond, "and"/"or", cond, ...]``, GROUP BY column units, one ORDER BY
direction with its value units, whether there is a LIMIT, and at most one INTERSECT /
UNION / EXCEPT whose right arm is again a query (``A UNION B UNION C`` is ``A UNION (B
UNION C)``, and a trailing ORDER BY / LIMIT belongs to the last arm).

* ``col_unit`` = ``ColUnit(agg, column, distinct)``, ``val_unit`` = ``ValUnit(op, left, right)``
  (``a - b``), a condition unit = ``Cond(negated, op, val_unit, val1, val2)`` whose values are
  a ``Query`` (subquery), a ``ColUnit`` (``T1.id = T2.id``) or a ``Value`` literal.
* Columns are named ``"__table.column__"`` (lower case, ``"__all__"`` for ``*``) when a
  schema is given, as the official evaluator does; without one they keep their written
  form (enough for hardness, which never looks at names).

Spider's parser only knows a subset of SQL (no column aliases, no functions besides the five
aggregates, no IS NULL, no IN lists, no LEFT/INNER JOIN, table aliases only with AS, ...).
Anything outside it is still converted as well as it can be, and described in
``ParsedSQL.unsupported``: the exact-match scorer treats such a query as unparseable, as the
official tool does; hardness ignores it.

    from text2sql.spider_sql import parse_spider
    parse_spider("SELECT count(*) FROM singer").query.select
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp


AGGREGATES = {exp.Max: "max", exp.Min: "min", exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg"}
ARITHMETIC = {exp.Sub: "-", exp.Add: "+", exp.Mul: "*", exp.Div: "/"}
COMPARISONS = {exp.EQ: "=", exp.GT: ">", exp.LT: "<", exp.GTE: ">=", exp.LTE: "<=", exp.NEQ: "!="}
SET_OPERATIONS = {exp.Intersect: "intersect", exp.Union: "union", exp.Except: "except"}


@dataclasses.dataclass(frozen=True)
class ColUnit:
    agg: str | None
    column: str
    distinct: bool | None


@dataclasses.dataclass(frozen=True)
class ValUnit:
    op: str | None
    left: ColUnit
    right: ColUnit | None = None


@dataclasses.dataclass(frozen=True)
class Value:
    """A literal: a lower-cased string (Spider lower-cases every token) or a float."""

    value: str | float


@dataclasses.dataclass(frozen=True)
class Cond:
    negated: bool
    op: str
    left: ValUnit
    val1: Query | ColUnit | Value | None
    val2: Query | ColUnit | Value | None = None


Condition = tuple  # (Cond, "and" | "or", Cond, ...)


@dataclasses.dataclass(frozen=True)
class Query:
    select: tuple[tuple[str | None, ValUnit], ...]
    select_distinct: bool | None = False
    tables: tuple[tuple[str, str | Query], ...] = ()
    """("table_unit", table) or ("sql", subquery), in FROM order."""
    join_conds: Condition = ()
    where: Condition = ()
    group_by: tuple[ColUnit, ...] = ()
    having: Condition = ()
    order: tuple[str, tuple[ValUnit, ...]] | None = None
    """(direction of the last ASC/DESC written, default "asc"; value units)"""
    limit: bool = False
    set_op: tuple[str, Query] | None = None
    """("intersect" | "union" | "except", right arm)"""


@dataclasses.dataclass(frozen=True)
class ParsedSQL:
    query: Query
    unsupported: tuple[str, ...]
    """What Spider's parser would reject (empty when it parses)."""


@dataclasses.dataclass(frozen=True)
class SpiderSchema:
    """Lower-case table -> column names, as the official evaluator reads them."""

    columns: Mapping[str, Sequence[str]]

    @classmethod
    def from_tables_json_entry(cls, entry: dict) -> SpiderSchema:
        tables = [t.lower() for t in entry["table_names_original"]]
        columns: dict[str, list[str]] = {t: [] for t in tables}
        for table_index, column in entry["column_names_original"]:
            if table_index >= 0:
                columns[tables[table_index]].append(column.lower())
        return cls(columns)


def parse_spider(sql: str, schema: SpiderSchema | None = None) -> ParsedSQL:
    """``sql`` in Spider's parsed shape. Raises ``sqlglot.errors.ParseError`` for text that
    isn't SQL at all (or holds several statements)."""
    trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    if len(trees) != 1:
        raise sqlglot.errors.ParseError(f"Expected one SQL statement, found {len(trees)}.")
    converter = _Converter(sql, trees[0], schema)
    query = converter.query(trees[0])
    return ParsedSQL(query=query, unsupported=tuple(converter.problems))


class _Converter:
    def __init__(self, text: str, tree: exp.Expression, schema: SpiderSchema | None):
        self.text = text
        self.schema = schema
        self.problems: list[str] = []
        self.aliases = self._alias_map(tree)

    def unsupported(self, what: str) -> None:
        self.problems.append(what)

    # -- names ------------------------------------------------------------------

    def _alias_map(self, tree: exp.Expression) -> dict[str, str]:
        """Spider resolves aliases over the whole statement (the last ``X AS a`` wins), not per scope."""
        aliases = {}
        tables = sorted(tree.find_all(exp.Table), key=lambda t: t.this.meta.get("start", 0))
        for table in tables:
            if table.alias:
                aliases[table.alias.lower()] = table.name.lower()
                alias = table.args["alias"].this
                between = self.text[table.this.meta.get("end", -1) + 1 : alias.meta.get("start", 0)]
                if between.strip().lower() != "as":
                    self.unsupported(f"table alias without AS: {table.sql()}")
        if self.schema:
            for name in self.schema.columns:
                if name in aliases:
                    self.unsupported(f"alias {name!r} is also a table name")
        return aliases

    def table_name(self, table: exp.Table) -> str:
        if not isinstance(table.this, exp.Identifier) or table.this.quoted or table.db:
            self.unsupported(f"quoted, qualified or computed table name: {table.sql()}")
        name = table.name.lower()
        if self.schema and name not in self.schema.columns:
            self.unsupported(f"unknown table {name!r}")
        return f"__{name}__" if self.schema else name

    def column(self, column: exp.Column | exp.Star, from_tables: list[str]) -> str:
        if isinstance(column, exp.Star) or isinstance(column.this, exp.Star):
            return "__all__" if self.schema else "*"
        if column.this.quoted or (column.args.get("table") and column.args["table"].quoted):
            self.unsupported(f"quoted identifier: {column.sql()}")
        name = column.name.lower()
        qualifier = column.table.lower()
        if not self.schema:
            return f"{qualifier}.{name}" if qualifier else name
        if qualifier:
            table = self.aliases.get(qualifier, qualifier)
            candidates = [table]
        else:
            candidates = from_tables
        for table in candidates:
            if name in self.schema.columns.get(table, ()):
                return f"__{table}.{name}__"
        self.unsupported(f"column {column.sql()} not found in {candidates}")
        return f"__{'.'.join(filter(None, [qualifier, name]))}__"

    # -- units ------------------------------------------------------------------

    def col_unit(self, node: exp.Expression, from_tables: list[str]) -> ColUnit:
        node = _unparen(node)
        agg = AGGREGATES.get(type(node))
        if agg:
            inner = node.this
            distinct = isinstance(inner, exp.Distinct)
            if distinct:
                inner = inner.expressions[0] if len(inner.expressions) == 1 else inner
            if not isinstance(inner, (exp.Column, exp.Star)):
                self.unsupported(f"aggregate of an expression: {node.sql()}")
                return ColUnit(agg, inner.sql().lower(), distinct)
            return ColUnit(agg, self.column(inner, from_tables), distinct)
        distinct = isinstance(node, exp.Distinct)
        if distinct and len(node.expressions) == 1:
            node = node.expressions[0]
        if isinstance(node, (exp.Column, exp.Star)):
            return ColUnit(None, self.column(node, from_tables), distinct)
        self.unsupported(f"not a column: {node.sql()}")
        return ColUnit(None, node.sql().lower(), distinct)

    def val_unit(self, node: exp.Expression, from_tables: list[str]) -> ValUnit:
        node = _unparen(node)
        op = ARITHMETIC.get(type(node))
        if op:
            return ValUnit(op, self.col_unit(node.this, from_tables), self.col_unit(node.expression, from_tables))
        return ValUnit(None, self.col_unit(node, from_tables))

    def select_item(self, node: exp.Expression, from_tables: list[str]) -> tuple[str | None, ValUnit]:
        if isinstance(node, exp.Alias):
            self.unsupported(f"column alias: {node.sql()}")
            node = node.this
        agg = AGGREGATES.get(type(node))
        if agg:
            # Spider reads the aggregate at the item level, then its argument as a value unit.
            return agg, self.val_unit(node.this, from_tables)
        if type(node) in ARITHMETIC and type(_unparen(node.this)) in AGGREGATES:
            self.unsupported(f"arithmetic on an aggregate in SELECT: {node.sql()}")
        return None, self.val_unit(node, from_tables)

    def value(self, node: exp.Expression, from_tables: list[str]) -> Query | ColUnit | Value:
        node = _unparen(node)
        if isinstance(node, exp.Subquery):
            return self.query(node.this)
        if isinstance(node, (exp.Select, exp.SetOperation)):
            return self.query(node)
        if isinstance(node, exp.Literal):
            return Value(node.this.lower() if node.is_string else float(node.this))
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return Value(-float(node.this.this))
        if isinstance(node, exp.Column) and node.this.quoted and not node.table:
            return Value(node.name.lower())  # Spider reads every double-quoted token as a string
        if isinstance(node, exp.Column):
            return self.col_unit(node, from_tables)
        self.unsupported(f"value Spider can't read: {node.sql()}")
        return Value(node.sql().lower())

    # -- conditions -------------------------------------------------------------

    def condition(self, node: exp.Expression | None, from_tables: list[str]) -> Condition:
        if node is None:
            return ()
        if isinstance(node, exp.Paren):
            self.unsupported(f"parenthesised condition: {node.sql()}")
            return self.condition(node.this, from_tables)
        if isinstance(node, (exp.And, exp.Or)):
            connective = "and" if isinstance(node, exp.And) else "or"
            left = self.condition(node.this, from_tables)
            right = self.condition(node.expression, from_tables)
            return left + (connective,) + right
        return (self.cond_unit(node, from_tables),)

    def cond_unit(self, node: exp.Expression, from_tables: list[str]) -> Cond:
        negated = False
        if isinstance(node, exp.Not):
            negated, node = True, node.this
            if not isinstance(node, (exp.In, exp.Like, exp.Between)):
                self.unsupported(f"NOT before a condition: NOT {node.sql()}")
        if node.args.get("negate"):
            negated = True
        if isinstance(node, exp.Between):
            low, high = (self.value(node.args[k], from_tables) for k in ("low", "high"))
            return Cond(negated, "between", self.val_unit(node.this, from_tables), low, high)
        if isinstance(node, exp.In):
            if node.args.get("query") is None:
                self.unsupported(f"IN with a list: {node.sql()}")
                return Cond(negated, "in", self.val_unit(node.this, from_tables), Value("(list)"))
            return Cond(negated, "in", self.val_unit(node.this, from_tables), self.value(node.args["query"], from_tables))
        op = COMPARISONS.get(type(node)) or ("like" if isinstance(node, exp.Like) else None)
        if op is None:
            self.unsupported(f"condition Spider can't read: {node.sql()}")
            op = type(node).__name__.lower()
            if not isinstance(node, exp.Binary):
                return Cond(negated, op, ValUnit(None, ColUnit(None, node.sql().lower(), False)), None)
        return Cond(negated, op, self.val_unit(node.this, from_tables), self.value(node.expression, from_tables))

    # -- clauses ----------------------------------------------------------------

    def from_clause(self, select: exp.Select) -> tuple[list, Condition, list[str]]:
        """Table units, join conditions, and the real tables that unqualified columns resolve against."""
        units, conds, from_tables = [], (), []
        source = select.args.get("from_")
        if source is None:
            self.unsupported("no FROM clause")
            return units, conds, from_tables
        for join_index, node in enumerate([source.this] + [j.this for j in select.args.get("joins") or []]):
            if join_index:
                join = select.args["joins"][join_index - 1]
                if join.kind or join.side or join.method or join.args.get("using"):
                    self.unsupported(f"join type Spider can't read: {join.sql()}")
            if isinstance(node, exp.Subquery):
                if node.alias:
                    self.unsupported(f"aliased subquery in FROM: {node.sql()}")
                units.append(("sql", self.query(node.this)))
            elif isinstance(node, exp.Table):
                name = self.table_name(node)
                units.append(("table_unit", name))
                from_tables.append(node.name.lower())
            else:
                self.unsupported(f"FROM item Spider can't read: {node.sql()}")
        for join in select.args.get("joins") or []:
            on = self.condition(join.args.get("on"), from_tables)
            if on:
                conds = conds + ("and",) + on if conds else on
        return units, conds, from_tables

    def query(self, node: exp.Expression) -> Query:
        node = _unparen(node)
        if isinstance(node, exp.Subquery):
            return self.query(node.this)
        if isinstance(node, exp.SetOperation):
            return self.set_operation(node)
        if not isinstance(node, exp.Select):
            self.unsupported(f"not a SELECT: {type(node).__name__}")
            return Query(select=())
        if node.args.get("with_") or node.args.get("with"):
            self.unsupported("WITH clause")
        units, join_conds, from_tables = self.from_clause(node)
        order = self.order(node.args.get("order"), from_tables)
        group = node.args.get("group")
        return Query(
            select=tuple(self.select_item(e, from_tables) for e in node.expressions),
            select_distinct=bool(node.args.get("distinct")),
            tables=tuple(units),
            join_conds=join_conds,
            where=self.condition(node.args["where"].this if node.args.get("where") else None, from_tables),
            group_by=tuple(self.col_unit(e, from_tables) for e in group.expressions) if group else (),
            having=self.condition(node.args["having"].this if node.args.get("having") else None, from_tables),
            order=order,
            limit=node.args.get("limit") is not None,
        )

    def order(self, order: exp.Order | None, from_tables: list[str]) -> tuple | None:
        if order is None:
            return None
        direction = "asc"
        for item in order.expressions:
            if item.args.get("desc") is not None:
                direction = "desc" if item.args["desc"] else "asc"
        items = [i.this if isinstance(i, exp.Ordered) else i for i in order.expressions]
        return direction, tuple(self.val_unit(i, from_tables) for i in items)

    def set_operation(self, node: exp.SetOperation) -> Query:
        """Left-nested sqlglot chains become Spider's right-nested ones."""
        arms, ops = _flatten_set_operation(node)
        if any(isinstance(n, exp.Union) and not n.args.get("distinct") for n in node.find_all(exp.Union)):
            self.unsupported("UNION ALL")
        trailing = {k: node.args.get(k) for k in ("order", "limit")}
        if any(trailing.values()):
            last = arms[-1].copy()
            for key, value in trailing.items():
                if value is not None:
                    last.set(key, value.copy())
            arms[-1] = last
        query = self.query(arms[-1])
        for arm, op in zip(reversed(arms[:-1]), reversed(ops)):
            query = dataclasses.replace(self.query(arm), set_op=(op, query))
        return query


def _flatten_set_operation(node: exp.Expression) -> tuple[list[exp.Expression], list[str]]:
    """``(A op1 B) op2 C`` -> arms [A, B, C] and operators [op1, op2]."""
    if not isinstance(node, exp.SetOperation):
        return [node], []
    left_arms, left_ops = _flatten_set_operation(node.this)
    right_arms, right_ops = _flatten_set_operation(node.expression)
    return left_arms + right_arms, left_ops + [SET_OPERATIONS[type(node)]] + right_ops


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node
