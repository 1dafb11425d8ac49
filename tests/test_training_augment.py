"""Training against the schema-name shortcut: schema noise variants and reworded questions.

    python -m pytest tests/test_training_augment.py -v
"""

import dataclasses
import json
import random
import re
import sqlite3

import pytest
import sqlglot
from sqlglot import exp
from transformers import AutoTokenizer

from tests.conftest import SPIDER
from text2sql.prompt import build_messages
from text2sql.schema import read_schema
from text2sql.spider import Spider, read_rewordings
from training import schema_noise
from training.data import DataArguments, build, label, noise_schemas, reworded, split_by_database, to_record
from training.packing import pack_examples, tokenize_example


pytestmark = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")

DATABASES = ["dorm_1", "college_2", "assets_maintenance", "document_management", "baseball_1"]
"""snake_case and CamelCase names, a gold query SQLite rejects (document_management), no file (baseball_1)."""


@pytest.fixture(scope="module")
def spider():
    return Spider(SPIDER)


@pytest.fixture(scope="module")
def items(spider):
    return label([e for e in spider.examples("train") if e.db_id in DATABASES])


def noise(spider, items, seed, **fields):
    args = DataArguments(schema_noise_share=0.5, schema_noise_group_size=10, **fields)
    return noise_schemas(spider, items, args, seed)


def compiles(schema, sql: str) -> bool:
    """``sql`` prepares against an empty database with exactly ``schema``'s tables and columns."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(schema.to_ddl(samples=False))
    try:
        conn.execute("EXPLAIN " + sql)
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def test_names_are_split_and_restyled():
    assert schema_noise.name_words("StuID") == ["Stu", "ID"]
    assert schema_noise.name_words("pet_type") == ["pet", "type"]
    assert schema_noise.name_words("AddressLine1") == ["Address", "Line", "1"]
    rng = random.Random(0)
    assert {schema_noise.restyle("StuID", "snake", rng) for _ in range(40)} == {"stu_id", "student_id"}
    assert {schema_noise.restyle("dept_name", "pascal", rng) for _ in range(40)} == {"DeptName", "DepartmentName"}
    assert schema_noise.restyle("PetType", "snake", rng) == "pet_type"


def test_sql_is_renamed_token_by_token_keeping_aliases_and_literals():
    sql = 'SELECT T1.pet_type ,  count(*) AS n FROM Pets AS T1 WHERE T1.weight > 10 AND name = "pet_type" GROUP BY T1.pet_type'
    renamed = schema_noise.rename_sql(sql, {"pet_type": "PetType", "pets": "Animal", "weight": "Wt"})
    assert renamed == 'SELECT T1.PetType ,  count(*) AS n FROM Animal AS T1 WHERE T1.Wt > 10 AND name = "pet_type" GROUP BY T1.PetType'
    assert schema_noise.rename_sql("SELECT count(*) AS pet_type FROM Pets", {"pet_type": "PetType"}) is None
    assert schema_noise.rename_sql("SELECT FROM WHERE (", {"a": "b"}) is None


def test_noise_is_deterministic_with_the_seed(spider, items):
    first, again, other = noise(spider, items, 1), noise(spider, items, 1), noise(spider, items, 2)
    assert first.schemas and first == again
    assert first.schemas != other.schemas
    assert first.variants == sum(max(1, round(round(0.5 * n) / 10)) for n in _counts(items).values())


RENAMES_IN_A_FRESH_PROCESS = """
import json, random
from text2sql.schema import Column, Schema, Table
from training.schema_noise import propose_renames
schema = Schema((Table("repair", tuple(map(Column, ("repair_ID", "name", "LaunchDate"))), ("repair_ID",)),
                 Table("machine", tuple(map(Column, ("machine_ID", "Name", "Team"))), ("machine_ID",))))
print(json.dumps([propose_renames(schema, random.Random(seed)) for seed in range(30)]))
"""


def test_renames_do_not_depend_on_the_process_hash_seed():
    """Of names equal but for case ("Name" in one table, "name" in another: machine_repair) the
    first takes the rename; they are ordered by name, not by a set's hash order, so the training
    data (and the fingerprint a resume checks) is the same in every process."""
    import os
    import subprocess
    import sys

    runs = {
        subprocess.run([sys.executable, "-c", RENAMES_IN_A_FRESH_PROCESS], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout
        for hash_seed in range(8)
    }
    assert len(runs) == 1 and any(json.loads(runs.pop()))


def _counts(items):
    counts = {}
    for item in items:
        counts[item.example.db_id] = counts.get(item.example.db_id, 0) + 1
    return counts


def test_variant_queries_fit_their_schema_and_keys_stay(spider, items):
    """Every gold query of a variant prepares against the variant's tables and columns alone
    (so no dropped column is used), and every key column of the database is still there."""
    noised = noise(spider, items, 3)
    checked = set()
    for position, (group, schema) in noised.schemas.items():
        db_id = items[position].example.db_id
        assert group.startswith(db_id + "~")
        if db_id == "baseball_1":  # no file: dropped and borrowed columns only, queries unchanged
            assert noised.queries[position] == items[position].example.query
        assert compiles(schema, noised.queries[position]), (group, noised.queries[position])
        if group in checked:
            continue
        checked.add(group)
        original = spider.schema(db_id)
        assert len(schema.tables) >= len(original.tables)
        for table in schema.tables:
            names = {c.name for c in table.columns}
            assert set(table.primary_key) <= names
            assert all(set(fk.columns) <= names for fk in table.foreign_keys)
    assert len(checked) >= len(DATABASES)


def test_drop_keeps_used_and_key_columns_and_drops_others(spider):
    schema = spider.schema("college_2")
    queries = ["SELECT title FROM course WHERE credits > 3", "SELECT * FROM classroom"]
    dropped = schema_noise.drop_unused_columns(schema, queries, random.Random(0))
    before = {t.name: set(t.column_names()) for t in schema.tables}
    after = {t.name: set(t.column_names()) for t in dropped.tables}
    assert after["classroom"] == before["classroom"]  # read whole by SELECT *
    assert {"title", "credits", "course_id", "dept_name"} <= after["course"]  # used, primary and foreign keys
    assert {"ID", "course_id", "sec_id", "semester", "year"} <= after["takes"]  # keys of takes
    assert sum(map(len, after.values())) < sum(map(len, before.values()))  # something went


@pytest.mark.parametrize("db_id", ["dorm_1", "college_2", "assets_maintenance", "department_management", "hr_1"])
def test_renamed_gold_returns_the_original_rows(spider, db_id):
    """On the real database: the renamed schema is what the app would read from a copy renamed
    with ALTER TABLE, and nearly every renamed gold query returns the original's rows there."""
    schema = spider.schema(db_id, 0)
    examples = {e.id: e.query for e in spider.examples("train") if e.db_id == db_id}
    renames = schema_noise.propose_renames(schema, random.Random(db_id))
    passed, failed, applied = schema_noise.check_renamed(spider.db_path(db_id), schema, examples, renames)
    assert applied == renames and len(renames) >= 3
    copy, _ = schema_noise.renamed_copy(spider.db_path(db_id), schema, applied)
    original = sqlite3.connect(spider.db_path(db_id))
    try:
        # a change of case alone is not ALTERed (SQLite's names ignore case)
        assert folded(schema_noise.rename_schema(schema, applied)) == folded(read_schema(copy, sample_values=0))
        assert len(passed) + len(failed) == len(examples)
        failed_but_valid = [i for i in failed if schema_noise.run_rows(original, examples[i]) is not None]
        assert len(failed_but_valid) <= 0.02 * len(examples)  # the rest: Spider gold that SQLite rejects
        changed = [i for i in passed if passed[i].lower() != examples[i].lower()]
        assert len(changed) >= len(passed) / 3
        for i in changed[:20]:
            assert copy.execute(passed[i]).fetchall() == original.execute(examples[i]).fetchall()
            with pytest.raises(sqlite3.Error):  # the original names are gone from the copy
                copy.execute(examples[i]).fetchall()
    finally:
        copy.close()
        original.close()


def folded(schema) -> str:
    return schema.to_ddl(samples=False).lower()


def test_the_rename_check_can_fail(spider, monkeypatch):
    """Queries left unrenamed fail the check, and so does a gold query SQLite rejects."""
    schema = spider.schema("dorm_1", 0)
    examples = {e.id: e.query for e in spider.examples("train") if e.db_id == "dorm_1"}
    renames = {"student": "Pupil"}
    monkeypatch.setattr(schema_noise, "rename_sql", lambda sql, renames: sql)
    passed, failed, _ = schema_noise.check_renamed(spider.db_path("dorm_1"), schema, examples, renames)
    uses_student = {i for i, sql in examples.items() if any(t.name.lower() == "student" for t in sqlglot.parse_one(sql).find_all(exp.Table))}
    assert uses_student and set(failed) == uses_student
    broken = next(e for e in spider.examples("train") if e.db_id == "document_management" and "LIMIT 3 INTERSECT" in e.query)
    _, failed, _ = schema_noise.check_renamed(
        spider.db_path("document_management"), spider.schema("document_management", 0), {0: broken.query}, {}
    )
    assert failed == [0]


def test_variants_pack_under_their_own_shared_prefix(spider, items, smollm2_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    noised = noise(spider, items, 5)
    group = next(iter(noised.schemas.values()))[0]
    positions = [p for p, (g, _) in noised.schemas.items() if g == group][:6]
    plain = [p for p, item in enumerate(items) if item.example.db_id == items[positions[0]].example.db_id and p not in noised.schemas][:3]
    records = []
    for p in positions + plain:
        item = dataclasses.replace(items[p], example=dataclasses.replace(items[p].example, query=noised.queries.get(p, items[p].example.query)))
        records.append(to_record(spider, item, None, 3072, noised.schemas.get(p)))
    tokenized = [{**tokenize_example(tokenizer, r["prompt"], r["completion"]), "group": r["group"]} for r in records]
    packs = pack_examples(tokenized, max_tokens=100_000)
    assert [p["num_examples"] for p in packs] == [len(positions), len(plain)]
    variant_schema = noised.schemas[positions[0]][1]
    for pack, schema in zip(packs, (variant_schema, spider.schema(items[plain[0]].example.db_id))):
        prefix = tokenizer.decode(pack["input_ids"][: pack["prefix_length"]])
        assert schema.to_ddl() in prefix and prefix.endswith("Question:")


# ---------------------------------------------------------------------------
# Rewordings


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def train_examples(spider):
    return spider.examples("train")


def test_rewordings_load(tmp_path, train_examples):
    first, second = train_examples[0], train_examples[7500]
    path = write_lines(tmp_path / "r.jsonl", [
        {"id": first.id, "db_id": first.db_id, "question": first.question, "reworded": "How many agency leaders are over 56?"},
        {"id": second.id, "db_id": second.db_id, "question": second.question, "reworded": " Something else entirely. "},
    ])
    assert read_rewordings(path, train_examples) == {0: "How many agency leaders are over 56?", 7500: "Something else entirely."}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"id": 99999}, "id 99999 is not a question of this split"),
        ({"db_id": "pets_1"}, "db_id 'pets_1' differs"),
        ({"question": "How many heads?"}, "question 'How many heads?' differs from Spider's"),
        ({"reworded": "  "}, "the reworded question is empty"),
        ({"reworded": None}, "the reworded question is empty"),
        (None, 'not a JSON object with "id"'),
    ],
)
def test_bad_rewordings_are_refused_with_a_reason(tmp_path, train_examples, change, reason):
    example = train_examples[0]
    good = {"id": example.id, "db_id": example.db_id, "question": example.question, "reworded": "fine"}
    path = tmp_path / "r.jsonl"
    if change is None:
        path.write_text(json.dumps(good) + "\n{not json\n")
    else:
        write_lines(path, [{**good, **change}])
    with pytest.raises(ValueError, match=r"r\.jsonl, line \d: " + re.escape(reason)):
        read_rewordings(path, train_examples)


def test_a_repeated_id_is_refused(tmp_path, train_examples):
    example = train_examples[3]
    row = {"id": example.id, "db_id": example.db_id, "question": example.question, "reworded": "x"}
    with pytest.raises(ValueError, match="line 2: id 3 appears twice"):
        read_rewordings(write_lines(tmp_path / "r.jsonl", [row, row]), train_examples)


def test_rewordings_of_held_out_databases_are_refused(tmp_path, spider, train_examples):
    _, held_out = split_by_database(train_examples, 0.05, 42)
    example = held_out[0]
    path = write_lines(tmp_path / "r.jsonl", [{"id": example.id, "db_id": example.db_id, "question": example.question, "reworded": "x"}])
    with pytest.raises(ValueError, match=f"held-out databases \\['{example.db_id}'\\]"):
        reworded([], spider, str(path), {e.db_id for e in held_out}, 0)


def test_reworded_copies_replace_duplicates(tmp_path, spider, train_examples):
    once, four_times, untouched = train_examples[0], train_examples[1], train_examples[2]
    items = label([once, four_times, four_times, untouched, four_times, four_times])
    path = write_lines(tmp_path / "r.jsonl", [
        {"id": e.id, "db_id": e.db_id, "question": e.question, "reworded": f"reworded {e.id}"} for e in (once, four_times)
    ])
    out, count = reworded(items, spider, str(path), set(), seed=0)
    questions = [i.example.question for i in out]
    assert count == 2 and len(out) == 7
    assert questions.count(once.question) == 1 and questions.count("reworded 0") == 1
    assert questions.count(four_times.question) == 2 and questions.count("reworded 1") == 2
    assert questions.count(untouched.question) == 1
    assert all(i.example.query == once.query for i in out if i.example.question == "reworded 0")


def test_held_out_databases_are_never_augmented(tmp_path, spider, train_examples):
    """With noise on every record and rewordings, the held-out records are exactly the plain ones."""
    args = DataArguments(spider_dir=str(SPIDER), max_train_examples=60, max_eval_examples=15, schema_noise_share=1.0)
    train, _ = split_by_database(train_examples, args.validation_fraction, 0)
    trained_db = build(args, seed=0).train[0]["db_id"]
    trained = [e for e in train if e.db_id == trained_db][:5]
    path = write_lines(tmp_path / "r.jsonl", [
        {"id": e.id, "db_id": e.db_id, "question": e.question, "reworded": f"reworded {e.id}"} for e in trained
    ])
    data = build(dataclasses.replace(args, rewordings_file=str(path)), seed=0)
    failed = int(re.search(r"(\d+) renamed queries failed", data.report)[1])
    assert sum(r["group"] == r["db_id"] for r in data.train) == failed  # every other record is noised
    questions = {r["prompt"][1]["content"].rsplit("Question: ", 1)[1] for r in data.train}
    assert {f"reworded {e.id}" for e in trained} <= questions
    assert all(r["group"] == r["db_id"] for r in data.eval)
    for record in data.eval:
        question = record["prompt"][1]["content"].rsplit("Question: ", 1)[1]
        assert record["prompt"] == build_messages(spider.schema(record["db_id"]), question)
        assert not question.startswith("reworded")
    assert "rewordings from" in data.report and "schema noise" in data.report


def test_the_cpu_recipe_trains_with_noise_and_rewordings():
    from training.data import recipe_data_arguments

    args = recipe_data_arguments("training/recipes/qwen2.5-coder-0.5b-cpu.yaml")
    assert 0 < args.schema_noise_share <= 0.5 and args.rewordings_file == "training/rewordings.jsonl"
    assert DataArguments().schema_noise_share == 0 and DataArguments().rewordings_file is None  # off unless asked
