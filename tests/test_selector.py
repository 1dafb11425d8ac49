"""The learned selector and the named selection rules, on candidates run in a real SQLite
sandbox: what the features read from the question and the SQL, how a fitted model scores
groups and says why, the vote kept as a rule, the rule setting, and best of k through the
pipeline (fake model) with a score and a reason on every candidate that ran.

    python -m pytest tests/test_selector.py -v
"""

import json

import pytest

from tests.conftest import build_db
from tests.test_selection import SINGERS_SQL, checked
from text2sql import selector
from text2sql.engine import load_generator
from text2sql.pipeline import Database, answer_batch
from text2sql.selection import Decoding, choose, how_chosen, result_groups, select
from text2sql.selector import FEATURES, Selector, group_features, shape


@pytest.fixture
def database(tmp_path):
    return Database.from_file(build_db(tmp_path / "singers.sqlite", SINGERS_SQL))


def features_of(database, question, *pairs) -> list[dict]:
    candidates = checked(database, *pairs)
    return group_features(result_groups(candidates), candidates, question, database.schema)


@pytest.fixture
def hand_model(tmp_path, monkeypatch):
    """A model file written here, in place of the shipped one: weights by feature name."""

    def write(weights: dict[str, float]) -> None:
        path = tmp_path / f"model-{len(list(tmp_path.glob('model-*')))}.json"
        path.write_text(json.dumps({"features": list(weights), "scale": [1.0] * len(weights),
                                    "weights": list(weights.values())}))
        monkeypatch.setattr(selector, "MODEL_PATH", path)

    monkeypatch.setenv("TEXT2SQL_SELECTION_RULE", "selector")
    return write


# ---------------------------------------------------------------------------
# Features


def test_the_question_against_the_sql(database):
    count, names = features_of(database, "How many singers are from France?",
                               ("SELECT count(*) FROM singer WHERE country = 'France'", -1.0),
                               ("SELECT name FROM singer WHERE country = 'France'", -0.5))
    assert count["count_missing"] == 0 and names["count_missing"] == 1
    assert count["values_missing"] == names["values_missing"] == 0  # nothing quoted, no digits
    oldest, first = features_of(database, "Who is the oldest singer?",
                                ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", -1.0),
                                ("SELECT name FROM singer LIMIT 1", -0.5))
    assert oldest["superlative_missing"] == 0 and first["superlative_missing"] == 1
    per_singer, total = features_of(database, "How many concerts does each singer have?",
                                    ("SELECT singer_id, count(*) FROM concert GROUP BY singer_id", -1.0),
                                    ("SELECT count(*) FROM concert", -0.5))
    assert per_singer["grouping_missing"] == 0 and total["grouping_missing"] == 1


def test_values_words_and_echoes(database):
    peru, chile = features_of(database, 'Which singers come from "Peru"?',
                              ("SELECT name FROM singer WHERE country = 'Peru'", -1.0),
                              ("SELECT name FROM singer WHERE country = 'Chile'", -0.5))
    assert peru["values_missing"] == 0 and chile["values_missing"] == 1
    assert peru["literals_invented"] == 0 and chile["literals_invented"] == 1
    echo, country = features_of(database, "Where is the singer named Ann from?",
                                ("SELECT name FROM singer WHERE name = 'Ann'", -0.5),
                                ("SELECT country FROM singer WHERE name = 'Ann'", -1.0))
    assert echo["echoes_filter"] == 1 and country["echoes_filter"] == 0
    year, ages = features_of(database, "Which years had concerts?",
                             ("SELECT DISTINCT year FROM concert", -1.0), ("SELECT age FROM singer", -0.5))
    assert year["words_uncovered"] == 0 and ages["words_uncovered"] == 2  # "years" and "concerts"
    assert year["tables_unnamed"] == 0 and ages["tables_unnamed"] == 1


def test_the_result_the_vote_and_the_model(database):
    rows = features_of(database, "Names of singers from France?",
                       ("SELECT name FROM singer WHERE country = 'France'", -1.0),
                       ("SELECT name FROM singer WHERE country = 'France' ORDER BY age", -2.0),
                       ("SELECT name FROM singer WHERE country = 'Chile'", -0.5),
                       ("SELECT country FROM singer", -3.0))
    france, chile, countries = rows
    assert (france["vote_share"], chile["vote_share"]) == (0.5, 0.25)
    assert france["most_votes"] == france["vote_pick"] == 1 and chile["vote_pick"] == 0  # rows first
    assert france["answers"] == 1 and chile["answers"] == 0 and chile["rows"] == 0
    assert countries["duplicate_rows"] == pytest.approx(1 / 3)  # France twice
    assert chile["likeliest_gap"] == 0 and france["likeliest_gap"] == -0.5
    assert france["greedy"] == 1 and chile["greedy"] == 0
    assert sum(r["probability_share"] for r in rows) == pytest.approx(1)
    assert all(set(r) == set(FEATURES) for r in rows)


def test_sql_sqlglot_cannot_read_gets_no_question_features():
    assert shape("SELECT name FROM singer WHERE") is None
    assert selector._QuestionCues.of("How many?", Database.from_text("Table: t\nColumns: a").schema).against(None) == \
        dict.fromkeys(selector.FEATURE_GROUPS["question"], 0.0)


# ---------------------------------------------------------------------------
# The model: scores, reasons, the shipped file


def test_a_fitted_weight_can_overrule_the_vote(database, hand_model):
    hand_model({"vote_share": 1.0, "count_missing": -5.0})
    candidates = checked(database,
                         ("SELECT name FROM singer", -0.5), ("SELECT name FROM singer ORDER BY id", -0.6),
                         ("SELECT count(*) FROM singer", -2.0))
    assert choose(candidates).sql == "SELECT name FROM singer"  # the vote: two against one
    chosen = select(candidates, "How many singers are there?", database.schema)
    assert chosen.sql == "SELECT count(*) FROM singer"
    assert chosen.score > 0.9 and candidates[0].score == candidates[1].score < 0.1
    assert chosen.reason == "for: 'how many' without a COUNT ↓; against: share of the candidates that return it ↓"
    assert candidates[0].reason.startswith("for: share of the candidates that return it ↑; against: 'how many'")


def test_one_group_is_the_only_result_and_nothing_ran_is_none(database, hand_model):
    hand_model({"vote_share": 1.0})
    candidates = checked(database, ("SELECT count(*) FROM singer", -1.0), ("SELECT count(id) FROM singer", -2.0))
    assert select(candidates, "How many singers?", database.schema) is candidates[0]
    assert [(c.score, c.reason) for c in candidates] == [(1.0, "the only result")] * 2
    failed = checked(database, ("SELECT nme FROM singer", -1.0))
    assert select(failed, "Names?", database.schema) is None and failed[0].score is None


def test_a_model_file_that_does_not_fit_the_code_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"features": ["votes_squared"], "scale": [1.0], "weights": [1.0]}))
    with pytest.raises(ValueError, match=r"Can't read the selector model .*features this code doesn't compute"):
        Selector.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="Can't read the selector model"):
        Selector.load(path)


def test_the_shipped_model_reads_and_names_only_known_features():
    fitted = Selector.load()
    assert set(fitted.features) <= set(FEATURES)
    assert len(fitted.features) == len(fitted.scale) == len(fitted.weights) and all(s > 0 for s in fitted.scale)
    record = json.loads(selector.MODEL_PATH.read_text())
    assert record["split"] == "train" and "dev" not in json.dumps(record["fitted_on"])


# ---------------------------------------------------------------------------
# The vote as a named rule; the rule setting


@pytest.mark.parametrize("pairs", [
    [("SELECT count(*) FROM singer WHERE age > 26", -0.5), ("SELECT count(*) FROM singer", -2.0),
     ("SELECT count(id) FROM singer", -1.5)],
    [("SELECT name FROM singer WHERE country = 'Chile'", -0.2),
     ("SELECT name FROM singer WHERE country = 'chile'", -0.3),
     ("SELECT max(age) FROM singer WHERE country = 'Chile'", -0.4), ("SELECT name FROM singer WHERE age > 40", -3.0)],
    [("SELECT name FROM singer WHERE age > 40", -3.0), ("SELECT name FROM singer WHERE age < 26", -4.0),
     ("SELECT name FROM singer WHERE age <= 25", -1.0)],
])
def test_the_vote_rule_picks_what_choose_picks_and_scores_its_groups(database, pairs):
    expected = choose(checked(database, *pairs))
    candidates = checked(database, *pairs)
    chosen = select(candidates, "any question", database.schema, rule="vote")
    assert chosen.sql == expected.sql
    assert chosen.score == max(c.score for c in candidates if c.ran) and chosen.reason.endswith("votes")


def test_the_vote_puts_results_without_rows_last_and_says_so(database):
    candidates = checked(database, ("SELECT name FROM singer WHERE country = 'Chile'", -0.2),
                         ("SELECT name FROM singer WHERE country = 'chile'", -0.3),
                         ("SELECT name FROM singer WHERE age > 40", -3.0))
    chosen = select(candidates, "Singers over 40?", database.schema, rule="vote")
    assert chosen is candidates[2] and (chosen.score, chosen.reason) == (1.0, "1 of 1 votes")
    assert candidates[0].score == 0 and candidates[0].reason == "no rows: results with rows come first"


def test_the_rule_comes_from_the_setting_and_an_unknown_one_is_refused(database, monkeypatch, hand_model):
    hand_model({"count_missing": -5.0})
    pairs = [("SELECT name FROM singer", -0.5), ("SELECT name FROM singer ORDER BY id", -0.6),
             ("SELECT count(*) FROM singer", -2.0)]
    assert select(checked(database, *pairs), "How many singers?", database.schema).sql == "SELECT count(*) FROM singer"
    monkeypatch.setenv("TEXT2SQL_SELECTION_RULE", "vote")
    assert select(checked(database, *pairs), "How many singers?", database.schema).sql == "SELECT name FROM singer"
    monkeypatch.setenv("TEXT2SQL_SELECTION_RULE", "coin")
    with pytest.raises(ValueError, match="Unknown selection rule 'coin'; choose one of: selector, vote."):
        select(checked(database, *pairs), "How many singers?", database.schema)


# ---------------------------------------------------------------------------
# Through the pipeline


def test_best_of_k_answers_by_the_rule_and_every_candidate_that_ran_carries_its_groups_score(
    fake_model, database, hand_model
):
    hand_model({"vote_share": 1.0, "superlative_missing": -5.0})
    fake_model.enqueue(("SELECT name FROM singer", -0.2), ("SELECT name FROM singer ORDER BY id", -0.4),
                       ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", -1.5), ("SELECT nme FROM singer", -0.1))
    decoding = Decoding.best_of(4)
    [answer] = answer_batch(load_generator(), database, ["Who is the oldest singer?"], decoding)
    assert answer.generation.sql == "SELECT name FROM singer ORDER BY age DESC LIMIT 1"
    assert answer.result.rows == [("Bob",)]
    records = [c.as_dict() for c in answer.generation.candidates]
    assert [r["votes"] for r in records] == [2, 2, 1, 0]
    assert records[0]["score"] == records[1]["score"] < records[2]["score"] and records[3]["score"] is None
    assert records[2]["reason"].startswith("for: 'most'/'least' without ORDER BY ... LIMIT or MAX/MIN ↓")
    note = how_chosen(decoding, answer.generation.candidates, answer.generation.repair)
    assert note.startswith("Best of 4 (temperature 0.8): 3 of 4 candidates ran, 1 of them agree on this result. "
                           "The selector scored it 0.99 (for: 'most'/'least' without")
