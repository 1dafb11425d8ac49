"""The ``text2sql`` command line.

    text2sql ask --db concert_singer.sqlite "How many singers do we have?"
    text2sql ask --schema "Table: users
    Columns: id, name, age" "How many users are older than 30?"
    text2sql ask --db my.db --json "..."        # {"sql", "raw", "chatty", "model", ...}
    text2sql ask --db my.db --mode best-of-k --k 4 "..."   # 4 candidates, checked, voted (text2sql.selection)
    text2sql ask --db my.db --mode auto "..."   # greedy; best of k only when that fails or returns no rows
    text2sql run-sql --db my.db "SELECT count(*) FROM singer"
    text2sql models

Exit status: 0 on success; 2 when a query is refused or fails (the reason on stderr);
1 when the input can't be used (missing file, bad schema, unknown model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from text2sql.errors import Text2SQLError
from text2sql.selection import GREEDY, MODES


EXIT_OK, EXIT_INPUT, EXIT_QUERY = 0, 1, 2


def _cell(value):
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def _print_table(columns: list[str], rows: list[tuple], truncated: bool, elapsed_ms: float) -> None:
    from tabulate import tabulate

    print(tabulate([[_cell(v) for v in row] for row in rows], headers=columns, tablefmt="simple"))
    note = f"{len(rows)} row{'s' if len(rows) != 1 else ''}" + (" (truncated)" if truncated else "")
    print(f"\n{note} in {elapsed_ms:.1f} ms")


def _load_database(args):
    from text2sql.pipeline import Database

    if args.db:
        return Database.from_file(args.db)
    text = args.schema
    if "\n" not in text and Path(text).is_file():
        text = Path(text).read_text()
    return Database.from_text(text)


def cmd_ask(args) -> int:
    from text2sql.pipeline import ask, how_answered
    from text2sql.selection import Decoding

    decoding = Decoding.from_mode(args.mode, args.k, args.temperature)
    database = _load_database(args)
    answer = ask(database, args.question, model=args.model, decoding=decoding)
    generation, result = answer.generation, answer.result
    if args.json:
        payload = {
            "sql": generation.sql,
            "raw": generation.raw,
            "chatty": generation.chatty,
            "model": generation.model,
            "execution_time_ms": generation.execution_time_ms,
            "columns": result.columns,
            "rows": [[_cell(v) for v in row] for row in result.rows],
            "truncated": result.truncated,
            "error": result.error,
        }
        if not decoding.is_greedy:  # the greedy payload stays as documented
            payload["decoding"] = generation.decoding_json()
            payload["candidates"] = [c.as_dict() for c in generation.candidates]
            payload["repair"] = generation.repair.as_dict() if generation.repair else None
        print(json.dumps(payload, ensure_ascii=False, default=str))
    else:
        for warning in generation.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not decoding.is_greedy:
            print(f"note: {how_answered(generation)}", file=sys.stderr)
        print(generation.sql or "(no SQL)")
        if result.ok and database.has_data:
            print()
            _print_table(result.columns, result.rows, result.truncated, result.elapsed_ms)
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_QUERY
    return EXIT_OK


def cmd_run_sql(args) -> int:
    from text2sql.pipeline import run_or_check

    database = _load_database(args)
    result = run_or_check(database, args.sql)
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_QUERY
    if args.json:
        payload = {
            "columns": result.columns,
            "rows": [[_cell(v) for v in row] for row in result.rows],
            "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed_ms, 2),
        }
        print(json.dumps(payload, ensure_ascii=False, default=str))
    elif database.has_data:
        _print_table(result.columns, result.rows, result.truncated, result.elapsed_ms)
    else:
        print("OK: the SQL is valid for this schema (a pasted schema has no rows to return).")
    return EXIT_OK


def cmd_models(args) -> int:
    from text2sql.engine import backend_for
    from text2sql.registry import Registry

    registry = Registry.load(args.registry) if args.registry else Registry.load()
    rows = []
    for name, spec in registry.models.items():
        rows.append(
            {
                "name": name,
                "default": name == registry.default,
                "title": spec.title,
                "backend": backend_for(spec),  # what "auto" resolves to here
                "base": spec.base.describe(),
                "adapter": spec.adapter.describe() if spec.adapter else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from tabulate import tabulate

    table = [[r["name"] + (" *" if r["default"] else ""), r["title"], r["base"], r["adapter"] or ""] for r in rows]
    print(tabulate(table, headers=["model (* default)", "title", "base weights", "adapter"]))
    return EXIT_OK


def _add_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", help="a SQLite database file (opened read-only)")
    source.add_argument("--schema", help="a schema file, or the text itself: CREATE TABLE ... or 'Table: t / Columns: a, b'")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text2sql", description="Ask questions of SQLite databases in English.")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="write SQL for a question (and run it on --db)")
    _add_source(ask)
    ask.add_argument("--model", help="registry model name (see `text2sql models`); default: the registry's default")
    ask.add_argument("--mode", choices=MODES, default=GREEDY,
                     help="greedy (fast); best-of-k: k candidates checked in the sandbox, the answer chosen by a "
                          "vote over their results; auto: greedy, and best-of-k only when the greedy SQL fails a "
                          "check or returns no rows")
    ask.add_argument("--k", type=int, default=None, help="best-of-k and auto: candidates (default: setting best_of_k, 4)")
    ask.add_argument("--temperature", type=float, default=None,
                     help="best-of-k and auto: sampling temperature (default: setting sampling_temperature, 0.8)")
    ask.add_argument("question")
    ask.set_defaults(handler=cmd_ask)

    run_sql = commands.add_parser("run-sql", help="run SQL through the read-only sandbox")
    _add_source(run_sql)
    run_sql.add_argument("sql")
    run_sql.set_defaults(handler=cmd_run_sql)

    models = commands.add_parser("models", help="list the model registry")
    models.add_argument("--registry", help="a registry YAML (default: the packaged one or $TEXT2SQL_REGISTRY)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (Text2SQLError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
