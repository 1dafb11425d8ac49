"""Raw model output -> one SQL statement, and whether the output was "chatty".

Models wrap SQL in markdown fences, open with "Here is the query:", close with an
explanation, or write a second statement. ``extract_sql`` keeps only the first statement;
``chatty`` is True when the raw text was anything but that bare statement (a trailing
semicolon and surrounding white space are allowed).

    >>> extract_sql("```sql\\nSELECT 1;\\n```")
    ExtractedSQL(sql='SELECT 1', chatty=True)
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class ExtractedSQL:
    sql: str
    chatty: bool


_FENCE = re.compile(r"```[ \t]*(?:sql|sqlite|SQL)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_SELECT_LINE = re.compile(r"^[ \t]*(SELECT)\b", re.IGNORECASE | re.MULTILINE)
_WITH_LINE = re.compile(r"^[ \t]*WITH\s+(?:RECURSIVE\s+)?[\w\"`\[\]]+(?:\s*\([^)]*\))?\s+AS\s*\(", re.IGNORECASE | re.MULTILINE)
# Statements that aren't queries are kept too (upper case only, so prose like "Update:"
# isn't mistaken for SQL): the sandbox then refuses them with a reason the user can read.
_OTHER_STATEMENT_LINE = re.compile(
    r"^[ \t]*(?:INSERT|UPDATE|DELETE|REPLACE|DROP|CREATE|ALTER|PRAGMA|ATTACH|DETACH|VACUUM|REINDEX|ANALYZE|BEGIN)\b",
    re.MULTILINE,
)
_SELECT_ANYWHERE = re.compile(r"\bSELECT\b", re.IGNORECASE)


def _start_of_sql(text: str) -> int | None:
    """Where the SQL begins: a line opening with a statement keyword (SELECT, WITH ... AS (,
    INSERT, DROP, ...), else the first SELECT anywhere."""
    matches = (_SELECT_LINE.search(text), _WITH_LINE.search(text), _OTHER_STATEMENT_LINE.search(text))
    line_starts = [m.start() for m in matches if m]
    if line_starts:
        start = min(line_starts)
        return start + len(text[start:]) - len(text[start:].lstrip())
    match = _SELECT_ANYWHERE.search(text)
    return match.start() if match else None


def _end_of_statement(text: str) -> int:
    """Index where the first statement ends: a ``;``, a blank line or a fence outside quotes."""
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "[":
            quote = "]"
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif ch == ";" or text.startswith("```", i):
            return i
        elif ch == "\n" and re.match(r"\n[ \t]*\n", text[i:]):
            return i
        i += 1
    return len(text)


def _bare(text: str) -> str:
    text = text.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def extract_sql(raw: str) -> ExtractedSQL:
    """The first SQL statement in ``raw`` (without the trailing ``;``) and whether ``raw`` was chatty."""
    raw = raw or ""
    fenced = _FENCE.search(raw)
    body = fenced.group(1) if fenced else raw
    start = _start_of_sql(body)
    if start is None:
        sql = _bare(body) if fenced else ""
    else:
        sql = _bare(body[start : start + _end_of_statement(body[start:])])
    chatty = bool(raw.strip()) and _bare(raw) != sql
    return ExtractedSQL(sql=sql, chatty=chatty)


def sql_is_complete(text: str) -> bool:
    """True once ``text`` (output so far) holds a whole first statement: generation can stop.

    Complete means a closed code fence, or a ``;`` or blank line after the SQL began.
    Trailing explanations are then never generated, which saves most of a chatty model's time.
    """
    fence = text.find("```")
    body = text
    if fence >= 0:
        newline = text.find("\n", fence)
        if newline < 0:
            return False
        body = text[newline:]
        if "```" in body:
            return True
    start = _start_of_sql(body)
    if start is None:
        return False
    rest = body[start:]
    return _end_of_statement(rest) < len(rest)
