"""Raw model output -> one SQL statement + the chatty flag.

    python -m pytest tests/test_sqlout.py -v
"""

import pytest

from text2sql.sqlout import extract_sql, sql_is_complete


@pytest.mark.parametrize(
    "raw, sql, chatty",
    [
        ("SELECT count(*) FROM singer", "SELECT count(*) FROM singer", False),
        ("SELECT count(*) FROM singer;", "SELECT count(*) FROM singer", False),
        ("  SELECT 1 ;\n", "SELECT 1", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x", False),
        ("```sql\nSELECT count(*) FROM singer;\n```", "SELECT count(*) FROM singer", True),
        ("```\nSELECT 1\n```", "SELECT 1", True),
        ("```sql\nSELECT 1", "SELECT 1", True),
        ("Here is the query:\n```sql\nSELECT a\nFROM t\nWHERE x = 'a;b'\n```\nThis counts.", "SELECT a\nFROM t\nWHERE x = 'a;b'", True),
        ("Here is the query: SELECT count(*) FROM singer", "SELECT count(*) FROM singer", True),
        ("SELECT a FROM t; SELECT b FROM t", "SELECT a FROM t", True),
        ("SELECT a\nFROM t\n\nExplanation: it selects a.", "SELECT a\nFROM t", True),
        ("With this query you get it:\nSELECT 1", "SELECT 1", True),
        ('select name from "my;table" -- a; comment\nwhere 1', 'select name from "my;table" -- a; comment\nwhere 1', False),
        ("I don't know.", "", True),
        ("DROP TABLE person;", "DROP TABLE person", False),
        ("```sql\nDELETE FROM t WHERE 1\n```", "DELETE FROM t WHERE 1", True),
        ("Update the table as follows", "", True),
        ("", "", False),
    ],
)
def test_extract_sql(raw, sql, chatty):
    extracted = extract_sql(raw)
    assert extracted.sql == sql
    assert extracted.chatty is chatty


@pytest.mark.parametrize(
    "text, complete",
    [
        ("SELECT count(*) FROM singer", False),
        ("SELECT count(*) FROM singer;", True),
        ("SELECT a FROM t WHERE x = 'a;", False),
        ("```sql\nSELECT 1\n", False),
        ("```sql\nSELECT 1\n```", True),
        ("Here is", False),
        ("SELECT a\nFROM t\n\n", True),
        ("```", False),
    ],
)
def test_sql_is_complete(text, complete):
    assert sql_is_complete(text) is complete
