"""Spider 1.0 from a local folder: examples, databases and schemas.

The folder is the official release layout (``dev.json``, ``train_spider.json``,
``train_others.json``, ``tables.json``, ``database/<db_id>/<db_id>.sqlite``). Default:
``$TEXT2SQL_SPIDER_DIR``, else ``../shared/spider`` next to the working directory or
next to this repository.

Schemas come from the SQLite file (with sample values) when the database is present, and
from ``tables.json`` otherwise (no samples: some databases, e.g. dev's ``wta_1``, are
missing from the local copy; their questions can be trained on but not executed).

Reworded questions (``read_rewordings``) are JSON lines ``{"id", "db_id", "question",
"reworded"}``: ``id`` indexes the split's examples and ``question`` is Spider's wording.

    python -m text2sql.spider            # counts per split and which databases are missing
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

from text2sql.sandbox import Sandbox
from text2sql.schema import Column, ForeignKey, Schema, Table


SPLIT_FILES = {"dev": ["dev.json"], "train_spider": ["train_spider.json"], "train_others": ["train_others.json"]}
SPLIT_FILES["train"] = SPLIT_FILES["train_spider"] + SPLIT_FILES["train_others"]

_TABLES_JSON_TYPES = {"number": "NUMERIC", "text": "TEXT", "time": "DATETIME", "boolean": "BOOLEAN", "others": ""}


def default_spider_dir() -> Path:
    if os.environ.get("TEXT2SQL_SPIDER_DIR"):
        return Path(os.environ["TEXT2SQL_SPIDER_DIR"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base.parent / "shared" / "spider"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "spider"


@dataclasses.dataclass(frozen=True)
class Example:
    id: int
    """Index in the split's file (for ``train``: in train_spider followed by train_others)."""
    split: str
    db_id: str
    question: str
    query: str


class Spider:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_spider_dir()
        if not (self.root / "tables.json").is_file():
            raise FileNotFoundError(
                f"No Spider data at {self.root} (tables.json missing). Point TEXT2SQL_SPIDER_DIR or --spider at it."
            )

    def examples(self, split: str = "dev") -> list[Example]:
        if split not in SPLIT_FILES:
            raise ValueError(f"Unknown split {split!r}; choose from {sorted(SPLIT_FILES)}.")
        rows = []
        for name in SPLIT_FILES[split]:
            rows.extend(json.loads((self.root / name).read_text()))
        return [
            Example(id=i, split=split, db_id=r["db_id"], question=r["question"].strip(), query=r["query"].strip())
            for i, r in enumerate(rows)
        ]

    def db_path(self, db_id: str) -> Path:
        return self.root / "database" / db_id / f"{db_id}.sqlite"

    def has_database(self, db_id: str) -> bool:
        return self.db_path(db_id).is_file()

    def sandbox(self, db_id: str) -> Sandbox:
        return Sandbox.from_file(self.db_path(db_id))

    @functools.cache
    def schema(self, db_id: str, sample_values: int = 3) -> Schema:
        """The database's schema with ``sample_values`` examples per column (from tables.json,
        without examples, when the SQLite file is missing)."""
        if self.has_database(db_id):
            return self.sandbox(db_id).read_schema(sample_values=sample_values)
        return self._tables_json()[db_id]

    @functools.cache
    def _tables_json(self) -> dict[str, Schema]:
        return {entry["db_id"]: _schema_from_tables_entry(entry) for entry in json.loads((self.root / "tables.json").read_text())}


def read_rewordings(path: str | os.PathLike, examples: list[Example]) -> dict[int, str]:
    """{example id: reworded question} from the JSON-lines file ``path``, checked line by line
    against ``examples`` (id known, same db_id, same original question, a non-empty rewording,
    each id once). A bad file raises ``ValueError`` naming the file, line and reason."""
    by_id = {e.id: e for e in examples}
    rewordings: dict[int, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example_id, db_id, question, reworded = (row[key] for key in ("id", "db_id", "question", "reworded"))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f'{path}, line {number}: not a JSON object with "id", "db_id", "question" and "reworded".') from None
        example = by_id.get(example_id)
        problem = (
            f"id {example_id!r} is not a question of this split" if example is None
            else f"db_id {db_id!r} differs from the question's database {example.db_id!r}" if db_id != example.db_id
            else f"question {question!r} differs from Spider's {example.question!r}" if str(question).strip() != example.question
            else "the reworded question is empty" if not isinstance(reworded, str) or not reworded.strip()
            else f"id {example_id} appears twice" if example_id in rewordings
            else None
        )
        if problem:
            raise ValueError(f"{path}, line {number}: {problem}.")
        rewordings[example_id] = reworded.strip()
    return rewordings


def _schema_from_tables_entry(entry: dict) -> Schema:
    columns = entry["column_names_original"]
    types = entry["column_types"]
    primary = set()
    for key in entry["primary_keys"]:
        primary.update(key if isinstance(key, list) else [key])
    tables = []
    for t_index, t_name in enumerate(entry["table_names_original"]):
        indexes = [i for i, (owner, _) in enumerate(columns) if owner == t_index]
        fks = [
            ForeignKey((columns[src][1],), entry["table_names_original"][columns[dst][0]], (columns[dst][1],))
            for src, dst in entry["foreign_keys"]
            if columns[src][0] == t_index
        ]
        tables.append(
            Table(
                name=t_name,
                columns=tuple(Column(name=columns[i][1], type=_TABLES_JSON_TYPES.get(types[i], "")) for i in indexes),
                primary_key=tuple(columns[i][1] for i in indexes if i in primary),
                foreign_keys=tuple(fks),
            )
        )
    return Schema(tables=tuple(tables), notes=("Schema from tables.json: the database file is missing.",))


if __name__ == "__main__":
    spider = Spider()
    for split in ("dev", "train_spider", "train_others"):
        examples = spider.examples(split)
        missing = sorted({e.db_id for e in examples if not spider.has_database(e.db_id)})
        runnable = sum(spider.has_database(e.db_id) for e in examples)
        print(f"{split}: {len(examples)} examples, {runnable} with a database; missing databases: {missing}")
