"""Schema introspection, pasted-schema parsing and DDL rendering.

    python -m pytest tests/test_schema.py -v
"""

import sqlite3

import pytest

from tests.conftest import build_db
from text2sql.errors import SchemaError
from text2sql.sandbox import Sandbox
from text2sql.schema import ForeignKey, parse_schema_text, quote_identifier, read_schema, table_ddl


def test_reads_awkward_tables_keys_and_samples(awkward_db):
    schema = Sandbox.from_file(awkward_db).read_schema(sample_values=3)
    assert schema.table_names() == [
        "Table With Space", "123_starts_with_digits", "order", "person", "friendship", "compound_ref",
        "table/with/slashes.csv",
    ]
    spaced = schema.table("Table With Space")
    assert spaced.column_names() == ["id", "full name", 'quote"d', "blob col"]
    assert spaced.primary_key == ("id",)
    assert spaced.columns[1].not_null
    # distinct values only, NULLs and blobs skipped
    assert spaced.columns[1].samples == ("Ada Lovelace", "Grace Hopper", "Alan Turing")
    assert spaced.columns[3].samples == ()
    # compound primary key keeps its declared order, not the column order
    assert schema.table("order").primary_key == ("select", "group")
    # two foreign keys to the same table, and a compound one
    assert set(schema.table("friendship").foreign_keys) == {
        ForeignKey(("person_a",), "person", ("id",)),
        ForeignKey(("person_b",), "person", ("id",)),
    }
    assert schema.table("compound_ref").foreign_keys == (ForeignKey(("s", "g"), "order", ("select", "group")),)


def test_sample_values_are_cut_and_limited(awkward_db):
    schema = Sandbox.from_file(awkward_db).read_schema(sample_values=1)
    (value,) = schema.table("123_starts_with_digits").columns[0].samples
    assert len(value) == 40 and value.endswith("…")
    assert all(len(c.samples) <= 1 for t in schema.tables for c in t.columns)


def test_rendered_ddl_quotes_what_sqlite_needs_and_round_trips(awkward_db):
    schema = Sandbox.from_file(awkward_db).read_schema()
    ddl = schema.to_ddl(samples=True)
    assert 'CREATE TABLE "order" (' in ddl
    assert '"123_starts_with_digits"' in ddl and '"quote""d" TEXT' in ddl
    assert "CREATE TABLE person (" in ddl  # plain names stay bare
    assert "-- example: ['Ada Lovelace', 'Grace Hopper', 'Alan Turing']" in ddl
    assert 'FOREIGN KEY (s, g) REFERENCES "order" ("select", "group")' in ddl
    # The DDL (comments included) is valid SQLite that recreates the same structure.
    conn = sqlite3.connect(":memory:")
    conn.executescript(ddl)
    again = read_schema(conn, sample_values=0)
    assert again == schema.with_sample_limit(0)


@pytest.mark.parametrize(
    "name, quoted",
    [("singer", "singer"), ("order", '"order"'), ("group", '"group"'), ("full name", '"full name"'),
     ('a"b', '"a""b"'), ("1abc", '"1abc"'), ("select", '"select"'), ("key", "key")],
)
def test_quote_identifier(name, quoted):
    assert quote_identifier(name) == quoted


def test_parses_ddl_with_several_tables_fks_and_odd_identifiers():
    text = '''
    -- a MySQL-flavoured dump
    CREATE TABLE `users` (
      id int(11) NOT NULL AUTO_INCREMENT,
      name varchar(20),
      PRIMARY KEY (id)
    ) ENGINE=InnoDB;
    CREATE TABLE "odd ""name""" ("user id" int REFERENCES users(id), [group] text);
    CREATE INDEX by_name ON users(name);
    CREATE TABLE orders (id INTEGER PRIMARY KEY, buyer INT, seller INT,
      FOREIGN KEY (buyer) REFERENCES users(id), FOREIGN KEY (seller) REFERENCES users(id));
    '''
    schema, ddl = parse_schema_text(text)
    assert schema.table_names() == ["users", 'odd "name"', "orders"]
    assert schema.table('odd "name"').column_names() == ["user id", "group"]
    assert schema.table('odd "name"').foreign_keys == (ForeignKey(("user id",), "users", ("id",)),)
    assert len(schema.table("orders").foreign_keys) == 2
    sandbox = Sandbox.from_ddl(ddl)
    assert sandbox.explain('SELECT "group" FROM "odd ""name""" JOIN users ON users.id = "user id"') is None
    assert "no such column" in sandbox.explain("SELECT nope FROM users")
    result = sandbox.run("SELECT count(*) FROM orders")
    assert result.ok and result.rows == [(0,)]


def test_keeps_the_users_types_when_sqlite_accepts_them():
    schema, _ = parse_schema_text("CREATE TABLE t (price DECIMAL(10, 2), born DATE, n varchar(5));")
    assert [c.type for c in schema.table("t").columns] == ["DECIMAL(10, 2)", "DATE", "varchar(5)"]


def test_parses_the_compact_form():
    text = "Table: users\nColumns: id, name, age\n\nTable: order\nColumns: id INTEGER, user id, \"total\" DECIMAL(10, 2)"
    schema, ddl = parse_schema_text(text)
    assert schema.table("users").column_names() == ["id", "name", "age"]
    order = schema.table("order")
    assert order.column_names() == ["id", "user id", "total"]
    assert [c.type for c in order.columns] == ["INTEGER", "", "DECIMAL(10, 2)"]
    assert Sandbox.from_ddl(ddl).explain('SELECT "user id", total FROM "order" WHERE total > 3') is None


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("CREATE TABLE a (x int,\n y text\n z int);", 3, "Expecting )"),
        ("Table: a\nColumns: x\nfoo: bar", 3, "Expected 'Table"),
        ("\n\nINSERT INTO a VALUES (1);", 3, "Only CREATE TABLE statements are accepted here; this one starts 'INSERT INTO a'."),
        ("CREATE TABLE a (x int);\nhello world", 2, "this one starts 'hello world'."),  # sqlglot calls it ALIAS
        ("CREATE TABLE a (x int);\nCREATE TABLE a (y int);", 2, "already exists"),
        ("Table: a\nColumns: x, , y", 2, "Can't read the column"),
        ("Table: a\n\nTable: b\nColumns: x", 1, "has no 'Columns:'"),
        ("Columns: x", 1, "must follow"),
        ("Table: a\nColumns: x, X", 2, "listed twice"),
        ("CREATE TABLE t AS SELECT 1;", 1, "AS SELECT"),
    ],
)
def test_bad_schema_text_names_the_line(text, line, words):
    with pytest.raises(SchemaError) as caught:
        parse_schema_text(text)
    assert caught.value.line == line
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"Line {line}:")


@pytest.mark.parametrize("text", ["", "   \n ", "-- just a comment", "hello there"])
def test_schema_text_without_tables_is_refused(text):
    with pytest.raises(SchemaError):
        parse_schema_text(text)


def test_table_ddl_without_samples_has_no_comments(awkward_db):
    schema = Sandbox.from_file(awkward_db).read_schema()
    assert "--" not in table_ddl(schema.table("person"), samples=False)


def test_huge_number_of_tables_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_MAX_TABLES", "50")
    sql = "".join(f"CREATE TABLE t{i} (a INT, b TEXT);" for i in range(400))
    path = build_db(tmp_path / "many.sqlite", sql)
    schema = Sandbox.from_file(path).read_schema()
    assert len(schema.tables) == 50
    assert "400 tables" in schema.notes[0]
