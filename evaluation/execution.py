"""Execution accuracy (EX): the test-suite evaluator's execution match on one database.

The semantics of ``exec_eval.py`` in taoyds/test-suite-sql-eval (field.md §3.4), run with
``--keep_distinct`` and without ``--plug_value``, on the single Spider database:

* both queries run (with `> =`, `< =`, `! =` closed up and MySQL's ``YEAR(CURDATE())`` read
  as 2020, as the official script does); a prediction that fails scores 0;
* two empty results match; otherwise row counts and column counts must agree;
* rows are compared as bags (duplicates count), and in order only if the lower-cased gold
  SQL contains the substring ``order by``;
* columns may be permuted: the prediction matches if some reordering of its columns does
  (``text2sql.results.results_match``, which best-of-k voting shares).

Every query runs in ``text2sql.sandbox.Sandbox`` with a time limit (the official script's
limit can never fire), and the gold results are cached per process.

    from evaluation.execution import execution_match
    execution_match(db_path, gold_sql, predicted_sql)   # ExecutionOutcome(match=True, ...)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

from text2sql.results import results_match
from text2sql.sandbox import QueryResult, Sandbox


MAX_ROWS = 100_000
"""Rows fetched at most. No Spider gold result comes near it; a prediction that returns more
can't equal its gold."""


@dataclasses.dataclass(frozen=True)
class ExecutionOutcome:
    match: bool
    executed: bool
    """The prediction ran without error (the valid-SQL rate counts these)."""
    error: str | None = None


def normalise(sql: str) -> str:
    """The official script's rewrites, applied to gold and prediction alike."""
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    return re.sub(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", "2020", sql, flags=re.IGNORECASE)


def order_matters(gold_sql: str) -> bool:
    """The official test: a plain substring, so an ORDER BY inside a subquery counts too."""
    return "order by" in normalise(gold_sql).lower()


def run(db_path: str | Path, sql: str, timeout_s: float | None = None) -> QueryResult:
    return _sandbox(str(db_path)).run(normalise(sql), max_rows=MAX_ROWS, timeout_s=timeout_s)


@functools.cache
def _sandbox(db_path: str) -> Sandbox:
    return Sandbox.from_file(db_path)


@functools.lru_cache(maxsize=4096)
def gold_result(db_path: str, gold_sql: str, timeout_s: float | None = None) -> QueryResult:
    return run(db_path, gold_sql, timeout_s)


def execution_match(
    db_path: str | Path, gold_sql: str, predicted_sql: str, timeout_s: float | None = None
) -> ExecutionOutcome:
    gold = gold_result(str(db_path), gold_sql, timeout_s)
    if not gold.ok or gold.truncated:
        raise RuntimeError(f"The gold query failed on {db_path}: {gold.error or 'too many rows'}: {gold_sql}")
    if not predicted_sql or not predicted_sql.strip():
        return ExecutionOutcome(match=False, executed=False, error="There is no SQL to run.")
    predicted = run(db_path, predicted_sql, timeout_s)
    if not predicted.ok:
        return ExecutionOutcome(match=False, executed=False, error=predicted.error)
    if predicted.truncated:
        return ExecutionOutcome(match=False, executed=True, error=f"More than {MAX_ROWS} rows.")
    return ExecutionOutcome(match=results_match(gold.rows, predicted.rows, order_matters(gold_sql)), executed=True)
