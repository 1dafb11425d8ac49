"""Static checks of a SQL candidate before it goes near a database: does it parse, is it one
query, and do the tables and columns it names exist in the schema?

SQLite (``EXPLAIN`` in the sandbox) has the last word on whether a query compiles; these
checks exist to say *why* one doesn't in words a model can act on during a repair round:
"singer has no column name; name is a column of: artist". They are deliberately lenient
wherever SQLite is: double-quoted names that match no column (SQLite reads them as strings,
and Spider's gold SQL relies on it), columns of derived tables and CTEs, and qualifiers that
sqlglot's scopes can't place are left for SQLite to judge. Every dev gold query passes
(tests/test_sqlcheck.py).

    from text2sql.sqlcheck import check_sql
    check_sql("SELECT nme FROM singer", schema)   # "no such column: nme (... columns of singer: ...)"
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from text2sql.schema import Schema


IMPLICIT_COLUMNS = {"rowid", "oid", "_rowid_"}
"""Columns every ordinary SQLite table has without declaring them."""


def check_sql(sql: str, schema: Schema) -> str | None:
    """None when ``sql`` is one query whose tables and columns resolve in ``schema`` (as far
    as can be told without SQLite); else what is wrong, with a hint where one helps."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except SqlglotError as error:
        return f"The SQL does not parse: {str(error).splitlines()[0]}"
    if len(trees) != 1:
        return f"Expected one SQL statement, found {len(trees)}."
    if not isinstance(trees[0], exp.Query):
        return "Only a SELECT query can answer a question."
    try:
        scopes = traverse_scope(trees[0])
    except SqlglotError:  # sqlglot can't follow the scopes: leave it to SQLite
        return None
    tables = {t.name.lower(): t for t in schema.tables}
    aliases = {a.alias.lower() for a in trees[0].find_all(exp.Alias)}
    for scope in scopes:
        problem = _unknown_table(scope, tables) or _unknown_column(scope, tables, aliases)
        if problem:
            return problem
    return None


def _unknown_table(scope: Scope, tables: dict) -> str | None:
    for source in scope.sources.values():
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            if source.name.lower() not in tables and not _is_cte(scope, source.name):
                return f"no such table: {source.name} (the tables are: {', '.join(t.name for t in tables.values())})"
    return None


def _is_cte(scope: Scope, name: str) -> bool:
    return any(name.lower() == cte.lower() for s in _enclosing(scope) for cte in s.cte_sources)


def _enclosing(scope: Scope):
    """``scope`` and every scope around it (a correlated subquery sees its outer query's tables)."""
    while scope is not None:
        yield scope
        scope = scope.parent


def _visible_tables(scope: Scope, tables: dict) -> tuple[dict, bool]:
    """Alias (lower case) -> schema table, for the tables this scope can see, and whether it
    can also see derived tables or CTEs (whose columns aren't checked here)."""
    visible, derived = {}, False
    for outer in _enclosing(scope):
        for alias, source in outer.sources.items():
            if isinstance(source, exp.Table) and source.name.lower() in tables:
                visible.setdefault(alias.lower(), tables[source.name.lower()])
            else:
                derived = True
    return visible, derived


def _unknown_column(scope: Scope, tables: dict, aliases: set[str]) -> str | None:
    visible, derived = _visible_tables(scope, tables)
    # Not scope.columns: it also lists the columns of subqueries inside this scope's conditions.
    for column in (node for node in scope.walk() if isinstance(node, exp.Column)):
        name = column.name.lower()
        if not name or name in IMPLICIT_COLUMNS or isinstance(column.this, exp.Star):
            continue
        if column.table:
            table = visible.get(column.table.lower())
            if table is not None and name not in {c.lower() for c in table.column_names()}:
                return f"no such column: {column.table}.{column.name} ({table.name} has no column {column.name}" + _where_else(
                    column.name, tables
                ) + ")"
        elif not derived and not column.this.quoted and name not in aliases:
            if not any(name in {c.lower() for c in t.column_names()} for t in visible.values()):
                in_query = ", ".join(sorted({t.name for t in visible.values()}))
                return f"no such column: {column.name} (not a column of {in_query or 'the tables in the query'}" + _where_else(
                    column.name, tables
                ) + ")"
    return None


def _where_else(column: str, tables: dict) -> str:
    """'; X is a column of: a, b' when other tables of the schema have that column."""
    owners = [t.name for t in tables.values() if column.lower() in {c.lower() for c in t.column_names()}]
    return f"; {column} is a column of: {', '.join(owners)}" if owners else ""
