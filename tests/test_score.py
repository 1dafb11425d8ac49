"""Scoring predictions files on real Spider dev: gold scores 100%, metrics.json has the agreed
keys, missing-database items are excluded and reported, and wrong answers count as wrong.

    python -m pytest tests/test_score.py -v
"""

import json

import pytest

from evaluation.score import main as score_main
from evaluation.score import read_predictions
from tests.conftest import SPIDER


pytestmark = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not found")

METRIC_KEYS = {
    "n",
    "ex",
    "em",
    "chatty_rate",
    "valid_sql_rate",
    "ex_ci95",
    "em_ci95",
    "per_hardness",
    "latency_ms",
    "model",
    "split",
    "decoding",
    "cpu",
    "engine",
    "selection",
    "evaluator_version",
}


def dev():
    return json.loads((SPIDER / "dev.json").read_text())


def write_predictions(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def gold_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gold")
    rows = [{"id": i, "db_id": e["db_id"], "prediction": e["query"], "raw": e["query"]} for i, e in enumerate(dev())]
    predictions = write_predictions(folder / "predictions.jsonl", rows)
    score_main(["--predictions", str(predictions), "--spider", str(SPIDER), "--out", str(folder), "--model", "gold"])
    return folder


def test_gold_predictions_score_100_percent_on_all_972_executable_items(gold_run):
    metrics = json.loads((gold_run / "metrics.json").read_text())
    assert metrics["n"] == 972
    assert metrics["ex"] == metrics["em"] == metrics["valid_sql_rate"] == 1.0
    assert metrics["chatty_rate"] == 0.0
    assert {level: bucket["n"] for level, bucket in metrics["per_hardness"].items()} == {
        "easy": 232,
        "medium": 416,
        "hard": 160,
        "extra": 164,
    }
    scored = [json.loads(line) for line in (gold_run / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 972 and all(s["ex"] and s["em"] and s["error"] is None for s in scored)
    assert set(scored[0]) == {"id", "ex", "em", "hardness", "error", "any_candidate_ex"}
    assert all(s["any_candidate_ex"] is None for s in scored)  # greedy lines have no candidates


def test_metrics_json_has_exactly_the_agreed_keys(gold_run):
    metrics = json.loads((gold_run / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS
    assert set(metrics["latency_ms"]) == {"p50", "p95"}
    assert metrics["ex_ci95"][0] < 1.0 == metrics["ex_ci95"][1]
    assert metrics["model"] == "gold" and metrics["split"] == "dev"
    assert metrics["decoding"] is None and metrics["selection"] is None  # lines that don't say how they were made
    assert metrics["cpu"] is None


def test_the_report_states_n_and_lists_the_missing_database_items(gold_run):
    report = (gold_run / "report.md").read_text()
    assert "n = 972 of 1034" in report
    assert "wta_1" in report
    wta = [i for i, e in enumerate(dev()) if e["db_id"] == "wta_1"]
    assert len(wta) == 62 and f"{wta[0]}–{wta[-1]}" in report
    assert (gold_run / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_wrong_failing_and_chatty_predictions(tmp_path):
    examples = dev()
    rows = [
        {
            "id": 0,
            "db_id": "concert_singer",
            "prediction": examples[0]["query"],
            "raw": "```sql\n" + examples[0]["query"] + "\n```",
        },
        {
            "id": 1,
            "db_id": "concert_singer",
            "prediction": "SELECT count(*) FROM stadium",
            "raw": "SELECT count(*) FROM stadium",
        },
        {
            "id": 2,
            "db_id": "concert_singer",
            "prediction": "SELECT nonsense FROM nowhere",
            "raw": "SELECT nonsense FROM nowhere",
        },
        {"id": 3, "db_id": "concert_singer", "prediction": "", "raw": "I can't answer that."},
    ]
    predictions = write_predictions(tmp_path / "predictions.jsonl", rows)
    score_main(
        ["--predictions", str(predictions), "--spider", str(SPIDER), "--out", str(tmp_path / "out"), "--workers", "1"]
    )
    scored = {s["id"]: s for s in map(json.loads, (tmp_path / "out" / "scored.jsonl").read_text().splitlines())}
    assert scored[0]["ex"] and scored[0]["em"]
    assert examples[1]["query"] != rows[1]["prediction"]
    assert not scored[1]["ex"] and scored[1]["error"] is None
    assert not scored[2]["ex"] and not scored[2]["em"] and "no such" in scored[2]["error"]
    assert not scored[3]["ex"] and scored[3]["error"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (
        metrics["n"] == 4
        and metrics["ex"] == 0.25
        and metrics["chatty_rate"] == 0.5
        and metrics["valid_sql_rate"] == 0.5
    )
    assert "n = 4 of 1034" in (tmp_path / "out" / "report.md").read_text()


def test_predictions_that_do_not_fit_the_split_are_refused(tmp_path):
    predictions = write_predictions(tmp_path / "p.jsonl", [{"id": 0, "db_id": "pets_1", "prediction": "SELECT 1"}])
    with pytest.raises(ValueError, match="wrong db_id"):
        score_main(["--predictions", str(predictions), "--spider", str(SPIDER), "--out", str(tmp_path / "o")])


def test_a_line_cut_short_by_an_interrupted_run_is_skipped(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 0, "db_id": "concert_singer", "prediction": "SELECT 1"}\n{"id": 1, "db_id": "conc')
    assert [p["id"] for p in read_predictions(path)] == [0]
