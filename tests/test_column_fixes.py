"""Measuring column fixes on committed runs (evaluation.column_fixes): a greedy run scored again
with its column names put right, and the ways of counting put-right best-of-k candidates, on
real Spider train questions.

    python -m pytest tests/test_column_fixes.py -v
"""

import json

import pytest

from evaluation import column_fixes
from tests.conftest import SPIDER

needs_spider = pytest.mark.skipif(not (SPIDER / "train_spider.json").is_file(), reason="Spider data not found")


@pytest.fixture
def spider():
    from text2sql.spider import Spider

    return Spider(SPIDER)


def club_question(spider, gold: str):
    return next(e for e in spider.examples("train") if e.query == gold and e.db_id == "club_1")


@needs_spider
def test_a_greedy_run_is_scored_again_with_its_columns_put_right(tmp_path, spider):
    example = club_question(spider, "SELECT count(*) FROM club")  # 4 clubs
    base = {"db_id": "club_1", "raw": "", "chatty": False, "latency_ms": 1.0, "warnings": [], "model": "m",
            "question": example.question}
    lines = [{**base, "id": example.id, "prediction": "SELECT count(ClubNme) FROM club",  # misspelt: fails
              "fix_column_names": False}]  # generated with --no-column-fixes
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run / "scored.jsonl").write_text(json.dumps(
        {"id": example.id, "ex": False, "em": False, "hardness": "easy", "error": "no such column: ClubNme",
         "any_candidate_ex": None}) + "\n")
    column_fixes.main([str(run), "--split", "train", "--spider", str(SPIDER), "--workers", "1", "--out", str(tmp_path / "out")])
    [fixed] = map(json.loads, (tmp_path / "out" / "predictions.jsonl").read_text().splitlines())
    assert fixed["prediction"] == "SELECT COUNT(ClubName) FROM club"
    assert fixed["warnings"] == ["Names the model got wrong were put right: ClubNme -> ClubName"]
    comparison = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert comparison["changed"] == 1
    assert (comparison["ex"]["b_only"], comparison["ex"]["a_only"]) == (1, 0)
    assert comparison["valid_sql"]["b"] == 1.0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "fix_column_names" not in metrics  # at its default (put right): not labelled "SQL as written"


@needs_spider
def test_put_right_candidates_are_counted_three_ways(tmp_path, spider):
    example = club_question(spider, "SELECT count(*) FROM club")

    def record(sql, logprob):
        return {"sql": sql, "raw": sql, "logprob": logprob, "tokens": 9, "error": None, "votes": 0}

    misspelt, wrong = "SELECT count(ClubNme) FROM club", "SELECT count(*) FROM club WHERE ClubID < 0"
    line = {"id": example.id, "db_id": "club_1", "question": example.question, "repair": None,
            "candidates": [record(misspelt, -0.2), record(misspelt, -0.3), record(wrong, -0.9), record("SELECT nme FROM club", -0.1)]}
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text(json.dumps(line) + "\n")
    outcomes = column_fixes.policy_outcomes(spider, "train", run, first=None)
    assert outcomes == {"as written": [False], "where none ran as written": [False], "voting beside the others": [True]}
    assert column_fixes.policy_outcomes(spider, "train", run, first=2) == {  # no candidate ran as written
        "as written": [False], "where none ran as written": [True], "voting beside the others": [True]}
