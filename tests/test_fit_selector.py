"""Fitting the selector (evaluation.fit_selector): the pairwise fit learns which way a feature
points, picks are scored per question, the cross-validation leaves each database out, and
saved candidates of real Spider train questions are checked and labelled against gold.

    python -m pytest tests/test_fit_selector.py -v
"""

import json

import pytest

from evaluation import fit_selector
from evaluation.fit_selector import (
    Question, Setting, fit, held_out_outcomes, labelled_questions, picks_right, vote_right,
)
from tests.conftest import SPIDER
from text2sql.selector import FEATURES, Selector

NAMES = ("vote_share", "words_uncovered")


def question(db_id: str, rows: list[dict], right: list[bool], vote: int = 0, number: int = 0) -> Question:
    features = [{**dict.fromkeys(FEATURES, 0.0), **row} for row in rows]
    return Question(id=number, db_id=db_id, features=features, right=right, vote=vote, fallback_right=False)


def covered_wins(db_id: str, number: int) -> Question:
    """The vote's group leaves a word of the question uncovered and is wrong; the other is right."""
    return question(db_id, [{"vote_share": 0.75, "words_uncovered": 1.0}, {"vote_share": 0.25}], [False, True],
                    number=number)


def test_the_fit_learns_which_way_each_feature_points_and_beats_the_vote_where_it_should():
    training = [covered_wins("a", i) for i in range(5)] + [
        question("a", [{"vote_share": 0.75}, {"vote_share": 0.25}], [True, False], number=10 + i) for i in range(5)]
    model = fit(training, NAMES, c=1.0)
    weights = dict(zip(model["features"], model["weights"]))
    assert weights["words_uncovered"] < 0 < weights["vote_share"]
    tie = question("b", [{"vote_share": 0.5}, {"vote_share": 0.5}], [True, False], number=21)
    unseen = [covered_wins("b", 20), tie]
    assert picks_right(model, unseen) == [True, True]  # the tie goes to the likelier group, the first here
    assert vote_right(unseen) == [False, True]
    shipped = Selector(tuple(model["features"]), tuple(model["scale"]), tuple(model["weights"]))
    scores = shipped.scores(unseen[0].features)
    assert scores[1] > scores[0]  # the shipped scorer reads the fitted model the same way


def test_questions_that_teach_nothing_are_left_out_of_fitting_but_scored():
    one_group = question("a", [{"vote_share": 1.0}], [True])
    all_wrong = question("a", [{"vote_share": 0.5}, {"vote_share": 0.5}], [False, False])
    none_ran = Question(id=3, db_id="a", features=[], right=[], vote=-1, fallback_right=True)
    assert not any(q.teaches for q in (one_group, all_wrong, none_ran))
    model = fit([covered_wins("a", 0), one_group, all_wrong, none_ran], NAMES, c=1.0)
    assert picks_right(model, [one_group, all_wrong, none_ran]) == [True, False, True]  # none ran: the repair


def test_each_database_is_scored_by_a_model_fitted_without_it(monkeypatch):
    fitted_on = []
    original = fit_selector.fit
    monkeypatch.setattr(fit_selector, "fit",
                        lambda qs, *args: fitted_on.append({q.db_id for q in qs}) or original(qs, *args))
    views = {"main": [covered_wins(db, i) for i, db in enumerate("abc")], "first 4": [], "extra": []}
    outcomes = held_out_outcomes(views, Setting("vote+result+question", 1.0, "main"), ["a", "b", "c"])
    assert fitted_on == [{"b", "c"}, {"a", "c"}, {"a", "b"}]
    assert outcomes == {"main": [True, True, True], "first 4": []}


@pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="needs Spider at ../shared/spider")
def test_saved_candidates_of_train_questions_are_checked_grouped_and_labelled(tmp_path):
    from text2sql.spider import Spider

    spider = Spider(SPIDER)
    example = next(e for e in spider.examples("train") if e.query == "SELECT count(*) FROM club")  # 4 clubs
    wrong = "SELECT count(*) FROM club WHERE 1 = 0"  # 0

    def record(sql, logprob):
        return {"sql": sql, "raw": sql, "logprob": logprob, "tokens": 9, "error": None, "votes": 0}

    line = {"id": example.id, "db_id": "club_1", "question": example.question, "repair": None,
            "candidates": [record(wrong, -0.5), record(example.query, -1.0), record("SELECT nme FROM club", -0.1)]}
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text(json.dumps(line) + "\n")
    [labelled] = labelled_questions(spider, "train", run)
    assert labelled.right == [False, True] and labelled.teaches
    assert labelled.vote == 0 and vote_right([labelled]) == [False]  # one vote each: the likelier wins the tie
    assert labelled.features[0]["greedy"] == 1 and labelled.features[1]["vote_share"] == pytest.approx(1 / 3)
    [first_two] = labelled_questions(spider, "train", run, first=1)
    assert first_two.right == [False] and not first_two.teaches
