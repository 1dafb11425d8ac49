"""Build the example SQLite databases from their SQL, and check the example questions.

    python -m examples.build                 # examples/shop.sqlite, school.sqlite, flights.sqlite
    python -m examples.build --out /tmp/ex   # somewhere else
    python -m examples.build --check         # ask the default model every example question

Each ``examples/<name>.sql`` is the whole database (schema and rows), so the binary files
are never committed: the app builds them at startup, in a few milliseconds.
``questions.yaml`` lists each database's title and its example questions, each with a
reference query.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sqlite3
import tempfile
from collections import Counter
from contextlib import closing
from pathlib import Path

import yaml


EXAMPLES_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class ExampleQuestion:
    question: str
    sql: str
    """A reference query: its result is the right answer."""


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    title: str
    questions: tuple[ExampleQuestion, ...]

    @property
    def sql_path(self) -> Path:
        return EXAMPLES_DIR / f"{self.name}.sql"


def list_examples() -> list[Example]:
    data = yaml.safe_load((EXAMPLES_DIR / "questions.yaml").read_text())
    return [
        Example(name, entry["title"], tuple(ExampleQuestion(**q) for q in entry["questions"]))
        for name, entry in data.items()
    ]


def build(example: Example, out_dir: str | os.PathLike) -> Path:
    """``<out_dir>/<name>.sqlite`` from the example's SQL, replacing any older copy in one step
    (a reader never sees a half-built file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{example.name}.sqlite"
    handle, partial = tempfile.mkstemp(dir=out_dir, suffix=".partial")
    os.close(handle)
    with closing(sqlite3.connect(partial)) as conn:
        conn.executescript(example.sql_path.read_text())
        conn.commit()
    os.replace(partial, target)
    return target


def build_all(out_dir: str | os.PathLike = EXAMPLES_DIR) -> dict[str, Path]:
    return {example.name: build(example, out_dir) for example in list_examples()}


def check_questions(out_dir: Path, model: str | None = None) -> int:
    """Ask ``model`` every example question; print whether its rows equal the reference's."""
    from text2sql.pipeline import Database, ask

    failures = 0
    for example in list_examples():
        database = Database.from_file(out_dir / f"{example.name}.sqlite")
        for item in example.questions:
            answer = ask(database, item.question, model=model)
            reference = database.sandbox.run(item.sql)
            same = answer.result.ok and Counter(answer.result.rows) == Counter(reference.rows)
            failures += not same
            print(f"{'ok  ' if same else 'DIFF'} {example.name}: {item.question}\n     {answer.generation.sql}")
            if not same:
                print(f"     got {answer.result.rows or answer.result.error}\n     want {reference.rows}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR, help="folder for the .sqlite files")
    parser.add_argument("--check", action="store_true", help="ask the model every example question")
    parser.add_argument("--model", help="registry model for --check (default: the registry's default)")
    args = parser.parse_args(argv)
    for name, path in build_all(args.out).items():
        print(f"built {path}")
    return 1 if args.check and check_questions(args.out, args.model) else 0


if __name__ == "__main__":
    raise SystemExit(main())
