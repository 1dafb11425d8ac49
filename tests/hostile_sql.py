"""Hostile SQL: statements a user or a model might send that must be refused or stopped.

Used by the sandbox tests and by every surface that runs SQL (CLI, app handlers, client
API, REST), so all of them are held to the same list. ``benchmarks/security_report.py`` counts
how many each surface stopped.
"""

RUNAWAY_CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
BIG_CTE = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) "
# One C call that runs for minutes: the progress handler never gets a turn, the worker is killed.
LONG_C_CALLS = [
    "SELECT instr(hex(zeroblob(2000000)), hex(zeroblob(500000)) || '1')",
    "SELECT length(replace(hex(zeroblob(2000000)), hex(zeroblob(500000)) || '1', 'x'))",
    "SELECT hex(zeroblob(2000000)) LIKE '%' || hex(zeroblob(499)) || '1'",
]
# One row of 100 blobs of 9 MB: more than the worker's memory limit.
HUGE_ROW = "SELECT " + ", ".join(["zeroblob(9000000)"] * 100)

HOSTILE = [
    "DELETE FROM person",
    "INSERT INTO person VALUES (9, 'x', 1)",
    "REPLACE INTO person VALUES (1, 'x', 1)",
    "UPDATE person SET name = 'x'",
    "DROP TABLE person",
    "CREATE TABLE evil (x)",
    "CREATE TEMP TABLE evil (x)",
    "CREATE VIEW evil AS SELECT 1",
    "CREATE INDEX evil ON person(name)",
    "CREATE TRIGGER evil AFTER INSERT ON person BEGIN DELETE FROM person; END",
    "ALTER TABLE person ADD COLUMN evil TEXT",
    "WITH c AS (SELECT 1) DELETE FROM person",
    "WITH c AS (SELECT 1) INSERT INTO person SELECT 10, 'x', 1 FROM c",
    "ATTACH DATABASE 'evil.db' AS evil",
    "ATTACH 'file:evil.db?mode=rwc' AS evil",
    "VACUUM",
    "VACUUM INTO 'copy.db'",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema = ON",
    "PRAGMA journal_mode = WAL",
    "PRAGMA user_version = 5",
    "PRAGMA trusted_schema = ON",
    "PRAGMA table_info(person)",
    "REINDEX",
    "ANALYZE",
    "BEGIN IMMEDIATE",
    "SAVEPOINT evil",
    "DETACH DATABASE main",
    "SELECT load_extension('/tmp/evil')",
    "SELECT fts3_tokenizer('simple')",
    "SELECT 1; DELETE FROM person",
    "SELECT 1; SELECT 2",
    RUNAWAY_CTE,
    BIG_CTE + "SELECT count(*) FROM n AS a, n AS b",
    "SELECT length(replace(hex(zeroblob(20000000)), '0', 'ab'))",
    "SELECT randomblob(2000000000)",
    "SELECT printf('%.*c', 2000000000, 'x')",
    "SELECT group_concat(hex(randomblob(1000))) FROM (" + BIG_CTE + "SELECT x FROM n)",
    "/**/ DELETE FROM person",
    "EXPLAIN DELETE FROM person",
    "PRAGMA temp_store = FILE",
    "SELECT * FROM pragma_table_info('person')",
    *LONG_C_CALLS,
    HUGE_ROW,
]
