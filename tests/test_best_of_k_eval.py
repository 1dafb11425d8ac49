"""Best-of-k through the evaluation commands (fake model, real Spider databases): evaluate
--mode best-of-k records candidates, votes and the decoding; fewer_candidates re-selects a
smaller k from the same candidates and repairs where needed; vote_rules compares vote rules
on the saved candidates of one run or several pooled; auto_mode replays auto decoding on them.

    python -m pytest tests/test_best_of_k_eval.py -v
"""

import json

import pytest

from evaluation import auto_mode, evaluate, fewer_candidates, vote_rules
from tests.conftest import SPIDER


pytestmark = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not found")

GOLD_COUNT = "SELECT count(*) FROM singer"
GOLD_ORDER = "SELECT name, country, age FROM singer ORDER BY age DESC"
CANDIDATES = [
    # dev 0: the most likely answer is wrong, but two of three agree on the right count
    ("SELECT count(*) FROM stadium", -0.1), (GOLD_COUNT, -1.0), ("SELECT COUNT(Singer_ID) FROM singer", -2.0),
    # dev 1: only the third candidate runs
    ("SELECT nme FROM singer", -0.5), ("SELECT count(x) FROM singer", -0.2), (GOLD_COUNT, -3.0),
    # dev 2: unanimous
    (GOLD_ORDER, -0.3), (GOLD_ORDER, -0.3), (GOLD_ORDER, -0.3),
]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def best_of_3_run(fake_model, tmp_path):
    fake_model.enqueue(*CANDIDATES)
    out = tmp_path / "best-of-3"
    evaluate.main(["--model", "fake", "--spider", str(SPIDER), "--out", str(out), "--batch-size", "2", "--workers", "1",
                   "--limit", "3", "--mode", "best-of-k", "--k", "3", "--temperature", "0.7", "--seed", "5"])
    return out


def test_evaluate_best_of_k_keeps_candidates_votes_and_the_decoding(best_of_3_run, fake_model):
    assert fake_model.calls == [("sample", 2, 3), ("sample", 1, 3)]  # one call per batch of one database
    predictions = lines(best_of_3_run / "predictions.jsonl")
    assert [p["prediction"] for p in predictions] == [GOLD_COUNT, GOLD_COUNT, GOLD_ORDER]
    assert [c["votes"] for c in predictions[0]["candidates"]] == [1, 2, 2]
    assert [c["error"] is None for c in predictions[1]["candidates"]] == [False, False, True]
    assert predictions[1]["candidates"][0]["error"].startswith("no such column: nme")
    assert all(p["repair"] is None for p in predictions)
    decoding = {"mode": "best-of-k", "k": 3, "temperature": 0.7, "seed": 5}
    assert all(p["decoding"] == decoding for p in predictions)
    metrics = json.loads((best_of_3_run / "metrics.json").read_text())
    assert metrics["ex"] == 1.0 and metrics["decoding"] == decoding
    assert metrics["selection"] == {"rule": "vote", "candidates_ran_rate": round(7 / 9, 6), "questions_without_a_running_candidate": 0,
                                    "repairs_that_ran": 0, "any_candidate_ex": 1.0}
    assert "| decoding | best of 3: the greedy answer + 2 drawn at temperature 0.7" in (
        best_of_3_run / "report.md").read_text()


def test_evaluate_refuses_to_resume_with_another_decoding(best_of_3_run):
    with pytest.raises(SystemExit, match="made with decoding .* not {'mode': 'greedy'}"):
        evaluate.main(["--model", "fake", "--spider", str(SPIDER), "--out", str(best_of_3_run), "--limit", "4"])


def test_fewer_candidates_selects_among_the_first_k_and_repairs_where_none_ran(best_of_3_run, fake_model, tmp_path):
    fake_model.reset()
    fake_model.enqueue("SELECT count(x) FROM singer", GOLD_COUNT)  # the repairs of dev 1, whose first two candidates fail
    out = tmp_path / "best-of-2"
    fewer_candidates.main([str(best_of_3_run), "--k", "2", "--out", str(out), "--spider", str(SPIDER), "--workers", "1"])
    assert fake_model.calls == [("sample", 1, 2)]
    repair_prompt = fake_model.history[0]
    assert repair_prompt[2] == {"role": "assistant", "content": "SELECT count(x) FROM singer"}
    predictions = lines(out / "predictions.jsonl")
    assert [len(p["candidates"]) for p in predictions] == [2, 2, 2]
    assert predictions[0]["prediction"] == "SELECT count(*) FROM stadium"  # 1 vote each: the most likely wins
    assert predictions[1]["prediction"] == GOLD_COUNT and predictions[1]["repair"]["error"] is None
    assert all(p["latency_ms"] is None for p in predictions)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ex"] == pytest.approx(2 / 3)
    # dev 0's vote missed the right candidate; a perfect selection would have scored all three
    assert [(s["ex"], s["any_candidate_ex"]) for s in lines(out / "scored.jsonl")] == [(False, True), (True, True), (True, True)]
    assert metrics["selection"]["any_candidate_ex"] == 1.0
    assert "the most a vote could score | 100.0% |" in (out / "report.md").read_text()
    assert metrics["decoding"] == {"mode": "best-of-k", "k": 2, "temperature": 0.7, "seed": 5,
                                   "first_k_of": str(best_of_3_run)}
    assert metrics["latency_ms"] == {"p50": None, "p95": None}


def test_the_same_k_selects_again_among_all_candidates(best_of_3_run, fake_model, tmp_path):
    fake_model.reset()
    out = tmp_path / "again"
    fewer_candidates.main([str(best_of_3_run), "--k", "3", "--out", str(out), "--spider", str(SPIDER), "--workers", "1"])
    assert fake_model.calls == []  # a candidate ran for every question: no repair round
    again, run = lines(out / "predictions.jsonl"), lines(best_of_3_run / "predictions.jsonl")
    assert [p["prediction"] for p in again] == [p["prediction"] for p in run]
    assert [p["candidates"] for p in again] == [p["candidates"] for p in run]


def test_another_rule_on_the_same_candidates_reuses_the_repairs_without_the_model(
    best_of_3_run, fake_model, tmp_path, monkeypatch
):
    fake_model.reset()
    fake_model.enqueue("SELECT count(x) FROM singer", GOLD_COUNT)  # dev 1's repairs, drawn once
    by_vote = tmp_path / "best-of-2"
    fewer_candidates.main([str(best_of_3_run), "--k", "2", "--out", str(by_vote), "--spider", str(SPIDER),
                           "--workers", "1"])
    fake_model.reset()
    monkeypatch.setenv("TEXT2SQL_SELECTION_RULE", "selector")
    by_selector = tmp_path / "best-of-2-selector"
    fewer_candidates.main([str(best_of_3_run), "--k", "2", "--repairs-from", str(by_vote), "--out", str(by_selector),
                           "--spider", str(SPIDER), "--workers", "1"])
    assert fake_model.calls == []
    vote_lines, selector_lines = lines(by_vote / "predictions.jsonl"), lines(by_selector / "predictions.jsonl")
    assert [p["selection_rule"] for p in vote_lines + selector_lines] == ["vote"] * 3 + ["selector"] * 3
    assert selector_lines[1]["repair"]["sql"] == vote_lines[1]["repair"]["sql"] == GOLD_COUNT
    assert selector_lines[1]["prediction"] == GOLD_COUNT and selector_lines[1]["repair"]["error"] is None
    assert all(c["score"] is not None for p in selector_lines for c in p["candidates"] if c["error"] is None)
    metrics = json.loads((by_selector / "metrics.json").read_text())
    assert metrics["selection"]["rule"] == "selector"
    assert "1 drawn at temperature 0.7 (seed 5 + each batch's first id), the learned selector over results" in (
        by_selector / "report.md").read_text()
    with pytest.raises(SystemExit, match="does not hold the same first 2 candidates for question 0"):
        fewer_candidates.main([str(best_of_3_run), "--k", "2", "--repairs-from", str(best_of_3_run),
                               "--out", str(tmp_path / "x"), "--spider", str(SPIDER)])


def test_fewer_candidates_needs_k_no_larger_than_the_run(best_of_3_run, tmp_path):
    with pytest.raises(SystemExit, match="--k must be from 2 to 3"):
        fewer_candidates.main([str(best_of_3_run), "--k", "4", "--out", str(tmp_path / "x"), "--spider", str(SPIDER)])


EMPTY = "SELECT name FROM singer WHERE age > 1000"  # runs, returns no rows


@pytest.fixture
def empty_answers_run(fake_model, tmp_path):
    """A second best-of-3 run on the same questions: dev 0's three candidates agree on no rows."""
    fake_model.reset()
    fake_model.enqueue((EMPTY, -0.5), (EMPTY, -0.5), (EMPTY, -0.5), *[(GOLD_COUNT, -0.2)] * 3, *[(GOLD_ORDER, -0.3)] * 3)
    out = tmp_path / "empty-answers"
    evaluate.main(["--model", "fake", "--spider", str(SPIDER), "--out", str(out), "--batch-size", "2", "--workers", "1",
                   "--limit", "3", "--mode", "best-of-k", "--k", "3", "--temperature", "0.7", "--seed", "5"])
    return out


def test_vote_rules_on_one_run(best_of_3_run, tmp_path, capsys):
    out = tmp_path / "rules.json"
    vote_rules.main([str(best_of_3_run), "--spider", str(SPIDER), "--out", str(out)])
    record = json.loads(out.read_text())
    # dev 0: two unlikely candidates agree on the right count; the likeliest (wrong) one outweighs them by probability
    assert {name: row["ex"] for name, row in record["rules"].items()} == {
        "votes": 1.0, "probability": pytest.approx(2 / 3), "votes, non-empty first": 1.0,
        "probability, non-empty first": pytest.approx(2 / 3), "any candidate": 1.0,
    }
    assert record["rules"]["probability"]["a_only"] == 1 and record["rules"]["probability"]["b_only"] == 0
    assert [q["votes"] for q in record["questions"]] == [True, True, True]
    assert "3 questions, 3 candidates each, some candidate ran for 3" in capsys.readouterr().out


def test_vote_rules_pools_runs_and_can_prefer_results_with_rows(best_of_3_run, empty_answers_run, tmp_path):
    out = tmp_path / "rules.json"
    vote_rules.main([str(best_of_3_run), str(empty_answers_run), "--spider", str(SPIDER), "--out", str(out)])
    record = json.loads(out.read_text())
    # dev 0 pooled: three empty results outvote the two right counts unless results with rows come first
    assert record["questions"][0] == {"id": 0, "ran": True, "votes": False, "probability": False,
                                      "votes, non-empty first": True, "probability, non-empty first": False,
                                      "any candidate": True}
    assert record["rules"]["votes, non-empty first"]["b_only"] == 1
    assert record["runs"] == [str(best_of_3_run), str(empty_answers_run)]

    # the first candidate of each run only: dev 0's greedy answers (wrong count, no rows) disagree, one vote each
    vote_rules.main([str(best_of_3_run), str(empty_answers_run), "--per-run", "1", "--spider", str(SPIDER), "--out", str(out)])
    first = json.loads(out.read_text())["questions"][0]
    assert (first["votes"], first["votes, non-empty first"], first["any candidate"]) == (False, False, False)


def test_vote_rules_refuses_what_it_cannot_compare(tmp_path):
    run = tmp_path / "greedy"
    run.mkdir()
    (run / "predictions.jsonl").write_text(json.dumps({"id": 0, "db_id": "concert_singer", "prediction": "SELECT 1"}) + "\n")
    with pytest.raises(SystemExit, match="must be a best-of-k run"):
        vote_rules.main([str(run), "--spider", str(SPIDER)])
    with pytest.raises(SystemExit, match="No predictions.jsonl in: .*nowhere"):
        vote_rules.main([str(tmp_path / "nowhere"), "--spider", str(SPIDER)])
    with pytest.raises(SystemExit, match="--per-run must be at least 1, not 0"):
        vote_rules.main([str(run), "--per-run", "0", "--spider", str(SPIDER)])


def test_auto_mode_replays_auto_on_the_saved_candidates(best_of_3_run, fake_model, tmp_path, capsys):
    fake_model.reset()
    out = tmp_path / "auto.json"
    auto_mode.main([str(best_of_3_run), "--k", "2", "3", "--spider", str(SPIDER), "--out", str(out)])
    assert fake_model.calls == []  # no model: the repair round is not replayed
    record = json.loads(out.read_text())
    # dev 0: the greedy answer (the wrong count) returns a row and is kept, though 2 of 3 candidates are right;
    # dev 1: the greedy answer fails, so auto votes (its first 2 candidates fail too: no repair here);
    # dev 2: the greedy answer is right and kept
    assert [q["escalation"] for q in record["questions"]][::2] == [None, None]
    assert record["questions"][1]["escalation"].startswith("failed: no such column: nme")
    assert record["escalations"] == {"kept": 2, "failed": 1, "returned no rows": 0, "returned only NULLs": 0,
                                     "had no SQL in it": 0}
    by_k = {row["k"]: row for row in record["table"]}
    assert by_k[2]["ex"] == {"greedy": pytest.approx(1 / 3), "best_of_k": pytest.approx(1 / 3),
                             "auto": pytest.approx(1 / 3)}
    assert by_k[3]["ex"] == {"greedy": pytest.approx(1 / 3), "best_of_k": 1.0, "auto": pytest.approx(2 / 3)}
    assert by_k[2]["escalated_without_a_running_candidate"] == 1 and by_k[3]["escalated_without_a_running_candidate"] == 0
    assert by_k[3]["mean_candidates_voted_on"] == pytest.approx(5 / 3)
    assert by_k[2]["mean_sequences"] == pytest.approx(7 / 3) and by_k[3]["mean_sequences"] == pytest.approx(2)
    assert (by_k[3]["auto_vs_greedy"]["b_only"], by_k[3]["auto_vs_best_of_k"]["a_only"]) == (1, 1)
    assert "| 3 | 33.3 | 100.0 | 66.7 | 1 (33.3%) | 1.67 | 2.00 |" in capsys.readouterr().out


def test_auto_mode_refuses_what_it_cannot_replay(best_of_3_run, tmp_path):
    with pytest.raises(SystemExit, match="--k must be from 2 to 3 for this run"):
        auto_mode.main([str(best_of_3_run), "--k", "4", "--spider", str(SPIDER)])
    with pytest.raises(SystemExit, match="No predictions.jsonl in"):
        auto_mode.main([str(tmp_path), "--k", "2", "--spider", str(SPIDER)])


def test_evaluate_in_auto_mode_escalates_only_where_the_greedy_answer_fails(fake_model, tmp_path):
    fake_model.enqueue(GOLD_COUNT, "SELECT nme FROM singer", "SELECT nme FROM singer", GOLD_COUNT, GOLD_ORDER)
    out = tmp_path / "auto"
    evaluate.main(["--model", "fake", "--spider", str(SPIDER), "--out", str(out), "--batch-size", "2", "--workers", "1",
                   "--limit", "3", "--mode", "auto", "--k", "2"])
    assert fake_model.calls == [("sample", 2, 1), ("sample", 1, 2), ("sample", 1, 1)]
    predictions = lines(out / "predictions.jsonl")
    assert [len(p["candidates"]) for p in predictions] == [0, 2, 0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ex"] == 1.0 and metrics["decoding"]["mode"] == "auto"
    assert "| decoding | auto: the greedy answer where it passes the checks and returns rows, else best of 2" in (
        out / "report.md").read_text()
