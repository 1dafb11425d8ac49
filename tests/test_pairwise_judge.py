"""The pairwise judge experiment (evaluation.pairwise_judge) on saved candidates of a real Spider
train question: what the judge is shown, that a judge which only prefers a position changes
nothing, and that one preferring the runner-up in both orders changes the answer and is scored
against gold. The judge here is a stand-in with fixed log-probabilities (the model's own
``next_token_logprobs`` is tested in test_llamacpp.py).

    python -m pytest tests/test_pairwise_judge.py -v
"""

import json

import pytest

from evaluation.pairwise_judge import judge_messages, judged_questions, leading_two, summary
from tests.conftest import SPIDER
from text2sql.prompt import user_message
from text2sql.selection import Candidate, check_candidates

RIGHT = "SELECT count(*) FROM club"  # 4 clubs
WRONG = "SELECT count(*) FROM club WHERE 1 = 0"  # 0


class PositionJudge:
    """Log-probabilities of "A" and "B": ``first`` for the query shown first, ``second`` for the other,
    unless ``runner_up_sql`` is shown, which then gets ``favoured`` wherever it is."""

    def __init__(self, first=-0.2, second=-1.8, runner_up_sql=None, favoured=-0.1):
        self.first, self.second, self.runner_up_sql, self.favoured = first, second, runner_up_sql, favoured
        self.prompts = []

    def next_token_logprobs(self, prompts, texts):
        assert texts == ["A", "B"]
        self.prompts += prompts
        scores = []
        for messages in prompts:
            request = messages[-1]["content"]
            a_shown = request.index("Query A:")
            b_shown = request.index("Query B:")
            row = [self.first, self.second]
            if self.runner_up_sql:
                where = request.index(self.runner_up_sql + "\nResult")
                row[0 if a_shown < where < b_shown else 1] = self.favoured
                row[1 if a_shown < where < b_shown else 0] = -3.0
            scores.append(row)
        return scores


@pytest.fixture
def spider():
    from text2sql.spider import Spider

    return Spider(SPIDER)


@pytest.fixture
def run(tmp_path, spider):
    """A best-of-3 run on one club_1 question: the vote's group is wrong (2 votes), the runner-up right."""
    example = next(e for e in spider.examples("train") if e.query == RIGHT)

    def record(sql, logprob):
        return {"sql": sql, "raw": sql, "logprob": logprob, "tokens": 9, "error": None, "votes": 0}

    line = {"id": example.id, "db_id": "club_1", "question": example.question, "repair": None,
            "candidates": [record(WRONG, -0.5), record(WRONG + " ", -0.7), record(RIGHT, -0.3)]}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "predictions.jsonl").write_text(json.dumps(line) + "\n")
    return folder, example


def test_the_judge_sees_the_questions_prompt_then_both_queries_and_their_first_rows(spider, run):
    _, example = run
    schema = spider.schema("club_1")
    candidates = [Candidate.from_record({"raw": sql, "logprob": -1.0, "tokens": 5})
                  for sql in (WRONG, WRONG, "SELECT clubname FROM club UNION ALL SELECT clubname FROM club")]
    check_candidates(candidates, schema, spider.sandbox("club_1"), has_data=True)
    pick, runner_up = leading_two(candidates)
    assert pick.sql == WRONG and runner_up.result.rows  # two votes against one
    content = judge_messages(schema, example.question, pick, runner_up)[-1]["content"]
    assert content.startswith(user_message(schema, example.question))
    assert content.index(WRONG) < content.index("UNION ALL")
    assert "Result of B (8 rows, first 5 shown):\nClubName\n" in content
    assert content.count("\n", content.index("Result of B")) == 5 + 1 + 2  # header, 5 rows, the request


def test_a_judge_that_only_prefers_a_position_changes_nothing(spider, run):
    folder, example = run
    judge = PositionJudge()
    [row] = judged_questions(spider, "train", folder, judge)
    assert len(judge.prompts) == 2  # both orders
    assert (row["vote_right"], row["runner_up_right"]) == (False, True)
    result = summary([row], {example.id: False})
    assert result["runner_up_chosen"] == 0
    assert result["vote_vs_judge"]["b"] == 0.0 and result["judge_right_on_decisive"] == 0
    assert result["a_likelier_than_b"] == {"pick shown first": 1, "runner-up shown first": 1}


def test_a_judge_preferring_the_runner_up_in_both_orders_changes_the_answer(spider, run):
    folder, example = run
    [row] = judged_questions(spider, "train", folder, PositionJudge(runner_up_sql=RIGHT))
    result = summary([row], {example.id: False, example.id + 1: True})  # an unjudged question stays as voted
    assert result["runner_up_chosen"] == 1 and result["judge_right_on_decisive"] == 1
    comparison = result["vote_vs_judge"]
    assert (comparison["a"], comparison["b"], comparison["b_only"], comparison["a_only"]) == (0.5, 1.0, 1, 0)
