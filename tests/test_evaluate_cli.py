"""The evaluation commands end to end: evaluate (resumable, with a fake model), compare,
leaderboard, and the offline ``evaluate`` metric module.

    python -m pytest tests/test_evaluate_cli.py -v
"""

import json

import pytest

from evaluation import compare, evaluate, leaderboard, schema_tables
from tests.conftest import SPIDER
from text2sql import cpu
from text2sql.spider import Spider


needs_spider = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not found")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_spider
def test_evaluate_generates_in_batches_resumes_and_scores(fake_model, tmp_path):
    gold = json.loads((SPIDER / "dev.json").read_text())
    fake_model.enqueue(*[gold[i]["query"] for i in range(5)])
    out = tmp_path / "run"
    args = ["--model", "fake", "--spider", str(SPIDER), "--out", str(out), "--batch-size", "2", "--workers", "1"]
    evaluate.main(args + ["--limit", "5"])
    predictions = lines(out / "predictions.jsonl")
    assert [p["id"] for p in predictions] == [0, 1, 2, 3, 4]
    assert [p["batch_size"] for p in predictions] == [2, 2, 2, 2, 1]
    assert {"id", "db_id", "prediction", "raw", "chatty", "latency_ms", "model"} <= set(predictions[0])
    assert json.loads((out / "metrics.json").read_text())["ex"] == 1.0

    # an interrupted run left half a line: it is dropped, and only the missing ids are generated
    with open(out / "predictions.jsonl", "a") as handle:
        handle.write('{"id": 5, "db_id": "conc')
    asked_before = len(fake_model.history)
    evaluate.main(args + ["--limit", "8"])
    assert len(fake_model.history) - asked_before == 3
    assert [p["id"] for p in lines(out / "predictions.jsonl")] == list(range(8))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["ex"] == 5 / 8  # the fake answers SELECT 1 once its queue is empty
    assert metrics["cpu"] == {cpu.kind(): 8}  # every line records the kind of CPU it was made on


@needs_spider
def test_evaluate_can_keep_to_some_databases(fake_model, tmp_path):
    out = tmp_path / "run"
    args = ["--model", "fake", "--spider", str(SPIDER), "--out", str(out), "--workers", "1"]
    evaluate.main(args + ["--databases", "pets_1, poker_player", "--limit", "4"])
    predictions = lines(out / "predictions.jsonl")
    assert [p["db_id"] for p in predictions] == ["pets_1"] * 4  # file order: pets_1 comes first
    with pytest.raises(SystemExit, match="No database file for: no_such_db, wta_1"):
        evaluate.main(args + ["--databases", "pets_1,wta_1,no_such_db"])


@needs_spider
def test_evaluate_puts_column_names_right_unless_told_to_run_the_sql_as_written(fake_model, tmp_path, monkeypatch):
    misspelt = "SELECT count(*) FROM singer WHERE Is_mal = 'F'"  # concert_singer has Is_male
    args = ["--model", "fake", "--spider", str(SPIDER), "--limit", "1", "--workers", "1"]
    fixed, written = tmp_path / "fixed", tmp_path / "written"
    fake_model.enqueue(misspelt)
    evaluate.main(args + ["--out", str(fixed)])
    fake_model.enqueue(misspelt)
    evaluate.main(args + ["--out", str(written), "--no-column-fixes"])

    [line] = lines(fixed / "predictions.jsonl")
    assert line["prediction"] == "SELECT COUNT(*) FROM singer WHERE Is_male = 'F'" and "fix_column_names" not in line
    assert line["warnings"] == ["Names the model got wrong were put right: Is_mal -> Is_male"]
    [line] = lines(written / "predictions.jsonl")
    assert line["prediction"] == misspelt and line["fix_column_names"] is False and line["warnings"] == []
    metrics = json.loads((written / "metrics.json").read_text())
    assert metrics["fix_column_names"] is False and metrics["valid_sql_rate"] == 0.0
    assert "| column names | as the model wrote them (not put right) |" in (written / "report.md").read_text()
    monkeypatch.delenv("TEXT2SQL_FIX_COLUMN_NAMES")  # as a new process would start
    with pytest.raises(SystemExit, match=r"settings \{'fix_column_names': False\}, not at their defaults"):
        evaluate.main(args + ["--out", str(written), "--limit", "2"])


@needs_spider
def test_evaluate_can_show_only_the_likeliest_tables_and_the_cut_is_measured(fake_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEXT2SQL_SCHEMA_TABLES", "0")  # evaluate --schema-tables sets it; restored after the test
    gold = [q["query"] for q in json.loads((SPIDER / "dev.json").read_text())[:4]]  # concert_singer's first four
    args = ["--model", "fake", "--spider", str(SPIDER), "--limit", "4", "--workers", "1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    fake_model.enqueue(*gold)
    evaluate.main(args + ["--out", str(whole)])
    asked = len(fake_model.history)
    fake_model.enqueue(*gold[:3], "SELECT name FROM stadium")
    evaluate.main(args + ["--out", str(cut), "--schema-tables", "2"])

    prompts = [messages[1]["content"] for messages in fake_model.history[asked:]]
    assert all(p.count("CREATE TABLE") == 2 and "CREATE TABLE singer" in p for p in prompts)
    assert all(line["schema_tables"] == 2 for line in lines(cut / "predictions.jsonl"))
    assert "schema_tables" not in lines(whole / "predictions.jsonl")[0]
    assert json.loads((cut / "metrics.json").read_text())["schema_tables"] == 2
    assert "schema_tables" not in json.loads((whole / "metrics.json").read_text())
    assert "| schema in the prompt | the 2 tables most related to each question |" in (cut / "report.md").read_text()
    with pytest.raises(SystemExit, match=r"settings \{'schema_tables': 2\}, not at their defaults"):
        evaluate.main(args + ["--out", str(cut), "--schema-tables", "0", "--limit", "5"])

    capsys.readouterr()
    report_path = tmp_path / "schema_tables.json"
    schema_tables.main(
        ["--model", "fake", "--tables", "2", "--spider", str(SPIDER), "--runs", str(whole), str(cut), "--out", str(report_path)]
    )
    report = json.loads(report_path.read_text())
    (row,) = report["coverage"]
    spider = Spider(SPIDER)
    examples = [e for e in spider.examples("dev") if spider.has_database(e.db_id)]
    assert row["questions"] == len(examples)
    assert row["changed"] == sum(len(spider.schema(e.db_id).tables) > 2 for e in examples)
    assert row["gold_kept_changed"] < row["changed"] and row["prompt_tokens_cut"] < row["prompt_tokens_whole"]
    pairing = report["runs"]
    assert pairing["tables"] == 2
    assert pairing["ex"]["all"] | {"ci95": None} == {
        "n": 4, "a": 1.0, "b": 0.75, "difference": -0.25, "ci95": None, "a_only": 1, "b_only": 0, "p_value": 1.0,
    }
    assert pairing["ex"]["gold kept"]["n"] == 4 and "gold lost" not in pairing["ex"]
    assert pairing["whole_run_cut_answers"] == {"n": 4, "ex": 0.75}
    assert pairing["prompt_tokens_mean"]["cut"] < pairing["prompt_tokens_mean"]["whole"]
    assert "| all | 4 | 100.0 | 75.0 | -25.0" in capsys.readouterr().out


@needs_spider
def test_the_cut_can_be_measured_on_some_databases_only(fake_model, tmp_path, capsys):
    out = tmp_path / "concert_singer.json"
    schema_tables.main(["--model", "fake", "--tables", "3", "--spider", str(SPIDER), "--databases", "concert_singer", "--out", str(out)])
    (row,) = json.loads(out.read_text())["coverage"]
    asked = [q for q in json.loads((SPIDER / "dev.json").read_text()) if q["db_id"] == "concert_singer"]
    assert row["questions"] == row["changed"] == len(asked)  # 4 tables: every prompt is cut
    assert "questions with a database about concert_singer" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="No database file for: no_such_db"):
        schema_tables.main(["--model", "fake", "--tables", "3", "--spider", str(SPIDER), "--databases", "no_such_db"])
    with pytest.raises(SystemExit, match="no dev question is about club_1"):  # a train database
        schema_tables.main(["--model", "fake", "--tables", "3", "--spider", str(SPIDER), "--databases", "club_1"])


def test_gold_tables_are_the_schemas_tables_the_query_reads():
    sql = "SELECT T1.name FROM singer AS T1 JOIN Concert AS T2 ON T1.id = T2.sid WHERE T2.year IN (SELECT year FROM stadium)"
    assert schema_tables.gold_tables(sql, ["singer", "concert", "stadium", "unused"]) == {"singer", "concert", "stadium"}


def write_scored(folder, outcomes):
    folder.mkdir()
    (folder / "scored.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "ex": ex, "em": em, "hardness": "easy", "error": None}) + "\n"
            for i, (ex, em) in enumerate(outcomes)
        )
    )
    return folder


def test_mcnemar_exact_p_values():
    assert compare.mcnemar_exact(0, 0) == 1.0
    assert compare.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert compare.mcnemar_exact(3, 3) == 1.0
    assert compare.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def test_compare_pairs_items_and_counts_discordant_pairs(tmp_path, capsys):
    a = write_scored(tmp_path / "a", [(True, True)] * 50 + [(False, False)] * 50)
    b = write_scored(
        tmp_path / "b", [(True, True)] * 48 + [(False, True)] * 2 + [(True, False)] * 12 + [(False, False)] * 38
    )
    result = compare.compare(a, b)
    assert result["ex"]["a_only"] == 2 and result["ex"]["b_only"] == 12
    assert result["ex"]["difference"] == pytest.approx(0.10)
    assert result["ex"]["p_value"] < 0.05 < result["em"]["p_value"]
    compare.main([str(a), str(b)])
    output = capsys.readouterr().out
    assert "| EX | 50.0 | 60.0 | +10.0 |" in output and "EM: no measurable change" in output


def test_leaderboard_prints_every_run_and_saves_a_chart(tmp_path, capsys):
    for run, ex in (("base", 0.4), ("tuned", 0.6)):
        (tmp_path / run).mkdir()
        metrics = {
            "n": 972,
            "ex": ex,
            "em": ex / 2,
            "model": run,
            "split": "dev",
            "per_hardness": {"easy": {"n": 232, "ex": ex, "em": ex}},
        }
        if run == "tuned":
            metrics["latency_ms"] = {"p50": 2300.0, "p95": 4500.0}
        (tmp_path / run / "metrics.json").write_text(json.dumps(metrics))
    leaderboard.main(["--results", str(tmp_path), "--markdown"])
    output = capsys.readouterr().out
    assert output.index("tuned") < output.index("base")  # best EX first
    assert "|     60 |" in output and "|     40 |" in output
    assert "|     2.3 |" in output and "nan" not in output  # base has no latency: blank
    assert (tmp_path / "leaderboard.png").read_bytes().startswith(b"\x89PNG")


@needs_spider
def test_the_evaluate_metric_module_loads_offline_and_scores():
    import evaluate as hf_evaluate

    metric = hf_evaluate.load("evaluation/metrics/spider_exec")
    db = str(SPIDER / "database" / "concert_singer" / "concert_singer.sqlite")
    result = metric.compute(
        predictions=["SELECT count(*) FROM singer", "SELECT name FROM singer", "SELECT nope FROM singer"],
        references=["SELECT count(*) FROM singer"] * 3,
        db_path=[db] * 3,
    )
    assert result == {"execution_accuracy": pytest.approx(1 / 3), "valid_sql_rate": pytest.approx(2 / 3)}


@needs_spider
def test_evaluate_takes_an_adapter_folder_such_as_a_training_checkpoint(tiny_registry, tiny_adapter_dirs, tmp_path):
    from text2sql import engine, registry

    registry.default_registry.cache_clear()
    engine.unload_all()
    out = tmp_path / "run"
    adapter = tiny_adapter_dirs["a"]
    args = ["--model", "tiny", "--spider", str(SPIDER), "--out", str(out), "--limit", "2", "--workers", "1"]
    evaluate.main(args + ["--adapter", str(adapter)])
    predictions = lines(out / "predictions.jsonl")
    assert {p["model"] for p in predictions} == {f"tiny+{adapter.parent.name}/{adapter.name}"}
    loaded = engine.load_generator(predictions[0]["model"], registry.default_registry().with_adapter("tiny", adapter)[0])
    assert loaded.adapter_name and str(adapter.resolve()) in loaded.origin
    with pytest.raises(Exception, match="not a LoRA adapter folder"):
        evaluate.main(args + ["--adapter", str(tmp_path)])
    engine.unload_all()
    registry.default_registry.cache_clear()
