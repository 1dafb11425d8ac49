"""Static checks of a SQL candidate before it goes near a database: does it parse, is it one
query, and do the tables and columns it names exist in the schema?

SQLite (``EXPLAIN`` in the sandbox) has the last word on whether a query compiles; these
checks exist to say *why* one doesn't in words a model can act on during a repair round:
"singer has no column name; name is a column of: artist". They are deliberately lenient
wherever SQLite is: double-quoted names that match no column (SQLite reads them as strings,
and Spider's gold SQL relies on it), columns of derived tables and CTEs, and qualifiers that
sqlglot's scopes can't place are left for SQLite to judge. Every dev gold query passes
(tests/test_sqlcheck.py).

``fix_column_names`` puts right the name mistakes small models make most, where only one fix
exists: a table name that is a near miss or the other number of a table's (``Transcript`` for
``Transcripts``), a column qualified with the wrong table of the query (``T2.name`` where only
``T1`` has ``name``), a column of a table the query left out but one foreign key away (that table
is joined), and a near-miss column spelling. It touches only names that cannot resolve, so a
query that runs is never changed.

    from text2sql.sqlcheck import check_sql, fix_column_names
    check_sql("SELECT nme FROM singer", schema)   # "no such column: nme (... columns of singer: ...)"
    fix_column_names("SELECT T2.name FROM singer AS T1 JOIN concert AS T2 ON ...", schema)
    # ("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON ...", ["T2.name -> T1.name"])
"""

from __future__ import annotations

import difflib

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from text2sql.schema import Schema
from text2sql.settings import get_settings


IMPLICIT_COLUMNS = {"rowid", "oid", "_rowid_"}
"""Columns every ordinary SQLite table has without declaring them."""

CLOSE_SPELLING = 0.9
"""How alike (difflib's ratio) a column name must be to the only column it can mean, to be
respelt: chosen on the held-out train questions (results/column-fixes/README.md), where 0.85
also took unrelated names such as ``order_item_date`` for ``order_item_id``."""


def check_sql(sql: str, schema: Schema) -> str | None:
    """None when ``sql`` is one query whose tables and columns resolve in ``schema`` (as far
    as can be told without SQLite); else what is wrong, with a hint where one helps."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except SqlglotError as error:
        return f"The SQL does not parse: {str(error).splitlines()[0]}"
    except RecursionError:  # sqlglot's parser recurses once per nested parenthesis
        return "The SQL is nested too deeply to check."
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
            if table is not None and name not in _lower_columns(table):
                return f"no such column: {column.table}.{column.name} ({table.name} has no column {column.name}" + _where_else(
                    column.name, tables
                ) + ")"
        elif not derived and not column.this.quoted and name not in aliases:
            if not any(name in _lower_columns(t) for t in visible.values()):
                in_query = ", ".join(sorted({t.name for t in visible.values()}))
                return f"no such column: {column.name} (not a column of {in_query or 'the tables in the query'}" + _where_else(
                    column.name, tables
                ) + ")"
    return None


def _where_else(column: str, tables: dict) -> str:
    """'; X is a column of: a, b' when other tables of the schema have that column."""
    owners = [t.name for t in tables.values() if column.lower() in _lower_columns(t)]
    return f"; {column} is a column of: {', '.join(owners)}" if owners else ""


def fixed_if_enabled(sql: str, schema: Schema) -> tuple[str, list[str]]:
    """``fix_column_names`` where the setting ``fix_column_names`` is on (the default), else
    ``sql`` as written; empty SQL as it is."""
    return fix_column_names(sql, schema) if sql and get_settings().fix_column_names else (sql, [])


def fix_column_names(sql: str, schema: Schema) -> tuple[str, list[str]]:
    """``sql`` with each table and column that cannot resolve put right where exactly one fix
    exists, and the changes in words ("T2.name -> T1.name"); ``sql`` and [] when nothing changes.

    A table that the schema lacks (and no CTE names) is renamed to the one table of the schema
    whose name is that name with an "s" or "es" added or taken away, or else at least
    ``CLOSE_SPELLING`` alike (columns qualified with its old name follow it). Then the columns:
    A qualified column whose table lacks it moves to the one other table of the query that has
    it; else it is respelt as the one column of that table whose name is at least
    ``CLOSE_SPELLING`` alike. An unqualified column that no table of the query has brings in the
    one table outside the query that has it, when exactly one single-column foreign key links it
    to a table of the query's own FROM (joined on that key; the query's other unqualified
    columns that the new table also has are qualified with their own table, so they don't
    become ambiguous); else it is respelt as the one column of the query's tables so alike.
    Columns of derived tables and CTEs, and double-quoted unqualified names (SQLite may read
    them as strings), are left alone, as ``check_sql`` leaves them."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        scopes = traverse_scope(tree)
    except (SqlglotError, RecursionError):  # left for check_sql and SQLite to refuse
        return sql, []
    tables = {t.name.lower(): t for t in schema.tables}
    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}
    changes = _respell_tables(tree, tables)
    if changes:
        scopes = traverse_scope(tree)
    for scope in scopes:
        visible, derived = _visible_tables(scope, tables)
        spelt = {alias: _alias_as_written(scope, alias) for alias in visible}
        for column in [node for node in scope.walk() if isinstance(node, exp.Column)]:
            name = column.name.lower()
            if not name or name in IMPLICIT_COLUMNS or isinstance(column.this, exp.Star):
                continue
            before = column.sql(dialect="sqlite")
            if column.table:
                table = visible.get(column.table.lower())
                if table is None or name in _lower_columns(table):
                    continue
                owners = [alias for alias, other in visible.items() if name in _lower_columns(other)]
                if len(owners) == 1:
                    column.set("table", exp.to_identifier(spelt[owners[0]]))
                else:
                    _respell(column, [table])
            elif not derived and not column.this.quoted and name not in aliases:
                if not any(name in _lower_columns(t) for t in visible.values()):
                    joined = _join_owner(scope, name, visible, spelt, tables)
                    if joined:
                        changes.append(f"{column.name}: {joined}")
                        continue
                    _respell(column, list(visible.values()))
            after = column.sql(dialect="sqlite")
            if after != before and f"{before} -> {after}" not in changes:
                changes.append(f"{before} -> {after}")
    return (tree.sql(dialect="sqlite"), changes) if changes else (sql, [])


def _respell_tables(tree: exp.Expression, tables: dict) -> list[str]:
    """Rename each table of ``tree`` that is neither in the schema nor a CTE to the one schema
    table it nearly names; the changes in words."""
    ctes = {cte.alias.lower() for cte in tree.find_all(exp.CTE)}
    changes = []
    for table in list(tree.find_all(exp.Table)):
        wrong = table.name
        if not isinstance(table.this, exp.Identifier) or wrong.lower() in tables or wrong.lower() in ctes:
            continue
        meant = _table_meant(wrong.lower(), tables)
        if meant is None:
            continue
        if not table.alias:  # columns qualified with the table's own name follow it
            for column in tree.find_all(exp.Column):
                if column.table.lower() == wrong.lower():
                    column.set("table", exp.to_identifier(meant))
        table.set("this", exp.to_identifier(meant))
        if f"{wrong} -> {meant}" not in changes:
            changes.append(f"{wrong} -> {meant}")
    return changes


def _table_meant(name: str, tables: dict) -> str | None:
    """The one schema table whose name is ``name`` in the other number, else the one spelt
    nearly like it; None when there isn't exactly one."""
    numbers = {name + "s", name + "es", name.removesuffix("s"), name.removesuffix("es")} - {name}
    for candidates in ([n for n in tables if n in numbers],
                       difflib.get_close_matches(name, list(tables), n=2, cutoff=CLOSE_SPELLING)):
        if candidates:
            return tables[candidates[0]].name if len(candidates) == 1 else None
    return None


def _join_owner(scope: Scope, name: str, visible: dict, spelt: dict, tables: dict) -> str | None:
    """Join the one table outside the query that has column ``name`` to the scope's SELECT, when
    exactly one single-column foreign key links it to a table of the scope's own FROM; the join
    in words, or None. ``visible`` and ``spelt`` learn the new table."""
    if not isinstance(scope.expression, exp.Select):
        return None
    shown = {t.name.lower() for t in visible.values()}
    owners = [t for t in tables.values() if name in _lower_columns(t) and t.name.lower() not in shown]
    if len(owners) != 1:
        return None
    (owner,) = owners
    own = {alias: t for alias, t in visible.items() if alias in {key.lower() for key in scope.sources}}
    paths = [(alias, mine, theirs)
             for alias, table in own.items() for mine, theirs in _single_column_links(table, owner)]
    if len(paths) != 1:
        return None
    (alias, mine, theirs), = paths
    for column in [n for n in scope.walk() if isinstance(n, exp.Column) and not n.table]:  # keep them unambiguous
        holders = [a for a, t in visible.items() if column.name.lower() in _lower_columns(t)]
        if column.name.lower() in _lower_columns(owner) and len(holders) == 1:
            column.set("table", exp.to_identifier(spelt[holders[0]]))
    on = exp.EQ(this=exp.column(mine, table=spelt[alias]), expression=exp.column(theirs, table=owner.name))
    scope.expression.join(exp.to_table(exp.to_identifier(owner.name).sql(dialect="sqlite")), on=on, copy=False)
    visible[owner.name.lower()], spelt[owner.name.lower()] = owner, owner.name
    return f"joined {owner.name} on {on.sql(dialect='sqlite')}"


def _single_column_links(table, other) -> list[tuple[str, str]]:
    """(column of ``table``, column of ``other``) for each single-column foreign key between them."""
    links = [(fk.columns[0], fk.other_columns[0]) for fk in table.foreign_keys
             if fk.other_table.lower() == other.name.lower() and len(fk.columns) == 1]
    return links + [(fk.other_columns[0], fk.columns[0]) for fk in other.foreign_keys
                    if fk.other_table.lower() == table.name.lower() and len(fk.columns) == 1]


def _lower_columns(table) -> set[str]:
    return {c.lower() for c in table.column_names()}


def _alias_as_written(scope: Scope, alias: str) -> str:
    """The alias (or table name) as the query spells it, for the scope that defines it."""
    for outer in _enclosing(scope):
        for key, source in outer.sources.items():
            if key.lower() == alias and isinstance(source, exp.Table):
                return source.alias or source.name
    return alias


def _respell(column: exp.Column, tables: list) -> None:
    """Rename ``column`` to the one column of ``tables`` spelt nearly like it, if there is one."""
    names = {c.lower(): c for t in tables for c in t.column_names()}
    close = difflib.get_close_matches(column.name.lower(), list(names), n=2, cutoff=CLOSE_SPELLING)
    if len(close) == 1:
        column.set("this", exp.to_identifier(names[close[0]]))


def fixes_note(changes: list[str]) -> str:
    """The changes ``fix_column_names`` made, as a warning shown with the answer."""
    return "Names the model got wrong were put right: " + "; ".join(changes)
