"""Schema noise for training prompts: the same question over a changed schema, so the model
learns to read the schema instead of expecting Spider's names (issue 18, item 5).

A *variant* of a database's schema is shared by a group of training examples (so shared-prefix
packing still packs them under one prefix). It applies, with the seed:

* ``rename``: table and column names rewritten in another style (snake_case <-> PascalCase)
  and with words abbreviated or expanded (``student_id`` -> ``StuID``, ``dept`` ->
  ``department``), in the schema and in every gold query of the group. A name maps to the same
  new name wherever it occurs (tables and columns alike), so a query's identifiers can be
  rewritten without resolving aliases. Each renamed query is checked: the original gold on the
  original database and the renamed gold on an in-memory copy renamed with ``ALTER TABLE``
  must return the same rows; an example that fails keeps the original schema (and is counted).
* ``drop``: columns no query of the group uses dropped at random (keys and the columns of a
  table a query reads with ``SELECT *`` always stay).
* ``distract``: a table and a few columns, with their example values, borrowed from other
  training databases (their names new to this database).

Variants are ordinary ``text2sql.schema.Schema`` objects, rendered by the app's own prompt
builder, so the prompt format is unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import sqlite3
from pathlib import Path

import sqlglot
from sqlglot import exp

from text2sql.schema import ForeignKey, Schema, Table, quote_identifier


KINDS = ("rename", "drop", "distract")

# Common abbreviations in database names, both ways (Spider itself has StuID, dept_name, Fname).
ABBREVIATIONS = {
    "student": "stu", "department": "dept", "number": "num", "employee": "emp", "customer": "cust",
    "description": "descr", "address": "addr", "quantity": "qty", "amount": "amt", "manager": "mgr",
    "product": "prod", "category": "cat", "information": "info", "organization": "org",
    "document": "doc", "account": "acct", "transaction": "txn", "reference": "ref",
    "professor": "prof", "building": "bldg", "telephone": "tel", "location": "loc",
    "position": "pos", "salary": "sal", "year": "yr", "count": "cnt", "government": "govt",
    "international": "intl", "registration": "reg", "temperature": "temp", "percentage": "pct",
    "capacity": "cap", "distance": "dist", "length": "len",
}
EXPANSIONS = {short: long for long, short in ABBREVIATIONS.items()} | {"fname": "first_name", "lname": "last_name"}

DROP_PROBABILITY = 0.3
"""Chance that a droppable column is left out of a variant."""
RENAME_PROBABILITY = 0.8
"""Chance that a name is renamed in a variant (when its new form differs and is free)."""
OTHER_STYLE_PROBABILITY = 0.8
"""Chance that a variant writes names in the style the database doesn't mostly use."""
MAX_VM_INSTRUCTIONS = 500_000_000
"""SQLite VM instructions one check may run: a count, not a clock, so the training data (and
its fingerprint, which resuming checks) comes out the same on a busy machine."""


# ---------------------------------------------------------------------------
# Names


def name_words(name: str) -> list[str]:
    """``StuID`` -> [Stu, ID]; ``pet_type`` -> [pet, type]; ``AddressLine1`` -> [Address, Line, 1]."""
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)


def restyle(name: str, style: str, rng: random.Random) -> str:
    """``name`` in ``style`` (snake or pascal), each word abbreviated or expanded with probability 1/2."""
    words = []
    for word in name_words(name):
        other = ABBREVIATIONS.get(word.lower()) or EXPANSIONS.get(word.lower())
        words += (other if other and rng.random() < 0.5 else word.lower()).split("_")
    if style == "snake":
        return "_".join(w.lower() for w in words)
    return "".join("ID" if w == "id" else w.capitalize() for w in words)


def renameable(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name))


def propose_renames(schema: Schema, rng: random.Random) -> dict[str, str]:
    """{lower-case old name: new name} for a share of the schema's names, one style per variant
    (mostly the one the database doesn't use), without two names of one table (or two tables)
    becoming equal."""
    # Ties broken by the name itself: of names equal but for case ("Name", "name"), the first
    # takes the rename, and a set's order changes with each process's hash seed.
    names = sorted({t.name for t in schema.tables} | {c.name for t in schema.tables for c in t.columns}, key=lambda n: (n.lower(), n))
    snake = sum("_" in n or n.islower() for n in names) >= len(names) / 2
    style = "pascal" if snake == (rng.random() < OTHER_STYLE_PROBABILITY) else "snake"
    renames = {}
    for name in names:
        new = restyle(name, style, rng)
        if rng.random() < RENAME_PROBABILITY and renameable(name) and new != name and quote_identifier(new) == new:
            renames.setdefault(name.lower(), new)
    while clash := _first_clash(schema, renames):
        del renames[clash]
    return renames


def _first_clash(schema: Schema, renames: dict[str, str]) -> str | None:
    """An old name whose new name equals another name in its namespace, if any."""
    namespaces = [[t.name for t in schema.tables]] + [t.column_names() for t in schema.tables]
    for names in namespaces:
        seen: dict[str, str] = {}
        for name in names:
            new = renames.get(name.lower(), name).lower()
            if new in seen and name.lower() in renames:
                return name.lower()
            if new in seen and seen[new] in renames:
                return seen[new]
            seen[new] = name.lower()
    return None


def rename_schema(schema: Schema, renames: dict[str, str]) -> Schema:
    """``schema`` with every table and column name (keys and references too) renamed."""

    def new(name: str) -> str:
        return renames.get(name.lower(), name)

    tables = []
    for table in schema.tables:
        keys = tuple(
            ForeignKey(tuple(map(new, fk.columns)), new(fk.other_table), tuple(map(new, fk.other_columns)))
            for fk in table.foreign_keys
        )
        columns = tuple(dataclasses.replace(c, name=new(c.name)) for c in table.columns)
        tables.append(Table(new(table.name), columns, tuple(map(new, table.primary_key)), keys))
    return dataclasses.replace(schema, tables=tuple(tables))


def rename_sql(sql: str, renames: dict[str, str]) -> str | None:
    """``sql`` with its table and column names renamed, everything else as written; None when
    sqlglot can't read it or place an identifier, or an alias is spelt like a renamed name.
    Double-quoted tokens are kept (Spider writes string literals in double quotes)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return None
    aliases = {a.name.lower() for a in tree.find_all(exp.TableAlias)} | {a.alias.lower() for a in tree.find_all(exp.Alias)}
    if aliases & renames.keys():
        return None
    spans = []
    for identifier in tree.find_all(exp.Identifier):
        name = identifier.this.lower()
        if identifier.quoted or name not in renames:
            continue
        start, end = identifier.meta.get("start"), identifier.meta.get("end")
        if start is None or sql[start : end + 1].lower() != name:
            return None
        spans.append((start, end + 1, renames[name]))
    for start, end, new in sorted(spans, reverse=True):
        sql = sql[:start] + new + sql[end:]
    return sql


# ---------------------------------------------------------------------------
# Checking renamed queries


def renamed_copy(db_path: Path, schema: Schema, renames: dict[str, str]) -> tuple[sqlite3.Connection, dict[str, str]]:
    """An in-memory copy of the database renamed with ALTER TABLE, and the renames that SQLite
    accepted (a rename it refuses, e.g. over a broken view, is left out). A change of case
    alone needs no ALTER: SQLite's names ignore case."""
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    copy = sqlite3.connect(":memory:")
    source.backup(copy)
    source.close()
    done = dict(renames)
    changed = {old for old, new in renames.items() if new.lower() != old}
    for table in schema.tables:
        for column in table.columns:
            old = column.name.lower()
            if old in changed & done.keys() and not _alter(copy, table.name, f"RENAME COLUMN {_q(column.name)} TO {_q(done[old])}"):
                del done[old]
    for table in schema.tables:
        old = table.name.lower()
        if old in changed & done.keys() and not _alter(copy, table.name, f"RENAME TO {_q(done[old])}"):
            del done[old]
    return copy, done


def _q(name: str) -> str:
    return quote_identifier(name, always=True)


def _alter(conn: sqlite3.Connection, table: str, action: str) -> bool:
    try:
        conn.execute(f"ALTER TABLE {_q(table)} {action}")
        return True
    except sqlite3.Error:
        return False


def run_rows(conn: sqlite3.Connection, sql: str) -> list[tuple] | None:
    """The query's rows, or None when it fails or runs past ``MAX_VM_INSTRUCTIONS``."""
    calls = itertools.count(1)
    conn.set_progress_handler(lambda: next(calls) * 10_000 > MAX_VM_INSTRUCTIONS, 10_000)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.set_progress_handler(None, 0)


# ---------------------------------------------------------------------------
# Dropping and borrowing columns


def used_names(queries: list[str]) -> tuple[set[str], set[str]]:
    """(lower-case column names the queries use, tables they read whole with ``SELECT *``)."""
    columns, whole = set(), set()
    for sql in queries:
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.SqlglotError:
            return {"*"}, set()  # unreadable: treat every column as used
        columns |= {c.name.lower() for c in tree.find_all(exp.Column)}
        for star in tree.find_all(exp.Star):
            if not isinstance(star.parent, exp.Count):
                whole |= {t.name.lower() for t in tree.find_all(exp.Table)}
    return columns, whole


def drop_unused_columns(schema: Schema, queries: list[str], rng: random.Random) -> Schema:
    """Columns no query uses, and that are no key, each left out with ``DROP_PROBABILITY``."""
    used, whole = used_names(queries)
    if "*" in used:
        return schema
    tables = []
    for table in schema.tables:
        keys = {c.lower() for c in table.primary_key} | {c.lower() for fk in table.foreign_keys for c in fk.columns}
        keys |= {c.lower() for t in schema.tables for fk in t.foreign_keys if fk.other_table.lower() == table.name.lower() for c in fk.other_columns}
        kept = tuple(
            c for c in table.columns
            if table.name.lower() in whole or c.name.lower() in used | keys or rng.random() >= DROP_PROBABILITY
        )
        tables.append(dataclasses.replace(table, columns=kept or table.columns[:1]))
    return dataclasses.replace(schema, tables=tuple(tables))


def add_distractors(schema: Schema, queries: list[str], donors: list[Schema], rng: random.Random, taken: set[str]) -> Schema:
    """Up to three columns and one table from ``donors`` (other databases), with their example
    values; none named like anything in ``schema`` or ``taken`` (e.g. the names before renaming),
    no column added to a table a query reads whole, no table sharing a word with a table's name."""
    if not donors:
        return schema
    taken = {n.lower() for n in taken} | {t.name.lower() for t in schema.tables}
    taken |= {c.name.lower() for t in schema.tables for c in t.columns}
    _, whole = used_names(queries)
    tables = list(schema.tables)
    for _ in range(rng.randint(1, 3)):
        column = rng.choice(rng.choice(rng.choice(donors).tables).columns)
        index = rng.randrange(len(tables))
        if column.name.lower() in taken or tables[index].name.lower() in whole:
            continue
        columns = list(tables[index].columns)
        columns.insert(rng.randrange(len(columns) + 1), column)
        tables[index] = dataclasses.replace(tables[index], columns=tuple(columns))
        taken.add(column.name.lower())
    donor = rng.choice(rng.choice(donors).tables)
    columns = tuple(c for c in donor.columns if c.name.lower() not in taken)
    table_words = {w for t in schema.tables for w in _stems(t.name)}
    if columns and donor.name.lower() not in taken and not _stems(donor.name) & table_words:
        key = tuple(k for k in donor.primary_key if k in {c.name for c in columns})
        tables.insert(rng.randrange(len(tables) + 1), Table(donor.name, columns, key))
    return dataclasses.replace(schema, tables=tuple(tables))


def _stems(name: str) -> set[str]:
    return {w.lower().rstrip("s") for w in name_words(name)}


# ---------------------------------------------------------------------------
# Variants


@dataclasses.dataclass
class Variant:
    schema: Schema
    queries: dict[int, str]
    """Example id -> its gold query in this variant (renamed when the variant renames)."""
    failed: list[int]
    """Examples whose renamed query did not pass the check (they keep the original schema)."""


def make_variant(
    schema: Schema,
    examples: dict[int, str],
    db_path: Path | None,
    kinds: tuple[str, ...],
    donors: list[Schema],
    rng: random.Random,
) -> Variant:
    """A noised schema for ``examples`` ({id: gold SQL}, all about one database). Renaming
    needs the database file (``db_path``) to check the renamed queries."""
    queries, failed = dict(examples), []
    original_names = {t.name for t in schema.tables} | {c.name for t in schema.tables for c in t.columns}
    if "rename" in kinds and db_path is not None:
        renames = propose_renames(schema, rng)
        if renames:
            queries, failed, renames = check_renamed(db_path, schema, examples, renames)
            schema = rename_schema(schema, renames)
    if "drop" in kinds:
        schema = drop_unused_columns(schema, list(queries.values()), rng)
    if "distract" in kinds:
        schema = add_distractors(schema, list(queries.values()), donors, rng, original_names)
    return Variant(schema, queries, failed)


def check_renamed(db_path: Path, schema: Schema, examples: dict[int, str], renames: dict[str, str]):
    """(renamed queries that return the original rows, ids that don't, renames SQLite applied)."""
    copy, renames = renamed_copy(db_path, schema, renames)
    original = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    passed, failed = {}, []
    try:
        for example_id, sql in examples.items():
            renamed = rename_sql(sql, renames)
            expected = run_rows(original, sql)
            if renamed is not None and expected is not None and run_rows(copy, renamed) == expected:
                passed[example_id] = renamed
            else:
                failed.append(example_id)
    finally:
        original.close()
        copy.close()
    return passed, failed, renames
