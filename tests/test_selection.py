"""Best-of-k selection with canned candidates (fake model, real SQLite sandbox): majority vote,
answers with rows first, ties by likelihood, failures dropped, the repair round, one batched
call per database.

    python -m pytest tests/test_selection.py -v
"""

import time

import pytest

from tests.conftest import build_db
from text2sql.engine import load_generator
from text2sql.pipeline import Database, answer_batch, ask, how_answered, warm_up
from text2sql.selection import AUTO, BEST_OF_K, GREEDY, Candidate, Decoding, check_candidates, choose


SINGERS_SQL = """
CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(id), year TEXT);
INSERT INTO singer VALUES (1, 'Ann', 'France', 30), (2, 'Bob', 'Peru', 41), (3, 'Cy', 'France', 25);
INSERT INTO concert VALUES (1, 1, '2014'), (2, 1, '2015'), (3, 2, '2014');
"""


@pytest.fixture
def database(tmp_path):
    return Database.from_file(build_db(tmp_path / "singers.sqlite", SINGERS_SQL))


def candidate(sql: str, logprob: float) -> Candidate:
    return Candidate(sql=sql, raw=sql, chatty=False, logprob=logprob, tokens=len(sql.split()))


def checked(database, *pairs) -> list[Candidate]:
    candidates = [candidate(sql, logprob) for sql, logprob in pairs]
    check_candidates(candidates, database.schema, database.sandbox, database.has_data)
    return candidates


def test_the_majority_result_wins_over_a_more_likely_minority(database):
    candidates = checked(
        database,
        ("SELECT count(*) FROM singer WHERE age > 26", -0.5),  # 2: the most likely, alone
        ("SELECT count(*) FROM singer", -2.0),  # 3
        ("SELECT count(id) FROM singer", -1.5),  # 3
        ("SELECT COUNT(*) FROM singer AS s", -3.0),  # 3
    )
    chosen = choose(candidates)
    assert chosen is candidates[2]  # the most likely of the three that agree
    assert [c.votes for c in candidates] == [1, 3, 3, 3]


def test_equal_results_are_judged_as_execution_accuracy_does(database):
    """Column order and row order don't matter; duplicate rows do."""
    candidates = checked(
        database,
        ("SELECT name, age FROM singer WHERE country = 'France'", -4.0),
        ("SELECT age, name FROM singer WHERE country = 'France' ORDER BY age", -5.0),
        ("SELECT name, age FROM singer", -1.0),
        ("SELECT s.name, s.age FROM singer AS s JOIN concert AS c ON c.singer_id = s.id WHERE s.country = 'France'", -0.5),
    )
    choose(candidates)
    assert [c.votes for c in candidates] == [2, 2, 1, 1]  # Ann twice in the join: a different bag


def test_a_tie_between_groups_goes_to_the_group_with_the_most_likely_candidate(database):
    candidates = checked(
        database,
        ("SELECT name FROM singer WHERE age > 40", -3.0),
        ("SELECT name FROM singer WHERE age >= 41", -2.5),
        ("SELECT name FROM singer WHERE age < 26", -4.0),
        ("SELECT name FROM singer WHERE age <= 25", -1.0),  # the most likely overall
    )
    assert choose(candidates) is candidates[3]
    assert [c.votes for c in candidates] == [2, 2, 2, 2]


def test_results_that_answer_something_outrank_more_votes_for_nothing(database):
    candidates = checked(
        database,
        ("SELECT name FROM singer WHERE country = 'Chile'", -0.2),  # no rows
        ("SELECT name FROM singer WHERE country = 'chile'", -0.3),  # no rows
        ("SELECT max(age) FROM singer WHERE country = 'Chile'", -0.4),  # one row of NULL
        ("SELECT name FROM singer WHERE country LIKE '%e%'", -3.0),  # the only answer with rows: 1 vote
    )
    assert choose(candidates) is candidates[3]
    assert [c.votes for c in candidates] == [2, 2, 1, 1]
    nothing = checked(database, *[(c.sql, c.logprob) for c in candidates[:3]])
    assert choose(nothing) is nothing[0]  # with no answer that has rows, the plain vote decides


def test_failing_candidates_are_dropped_with_their_reasons(database):
    candidates = checked(
        database,
        ("SELECT nme FROM singer", -0.1),  # unknown column: caught before SQLite, with a hint
        ("SELECT T1.year FROM singer AS T1", -0.2),  # a column of another table
        ("DELETE FROM singer", -0.3),
        ("SELECT name FROM singer WHERE", -0.4),
        ("", -0.5),
        ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", -5.0),
    )
    assert choose(candidates) is candidates[5]
    errors = [c.error for c in candidates]
    assert errors[0].startswith("no such column: nme (not a column of singer")
    assert errors[1] == "no such column: T1.year (singer has no column year; year is a column of: concert)"
    assert errors[2] == "Only a SELECT query can answer a question."
    assert errors[3].startswith("The SQL does not parse")
    assert errors[4] == "The model did not write a SQL query."
    assert errors[5] is None and candidates[5].result.rows == [("Bob",)]
    assert [c.votes for c in candidates] == [0, 0, 0, 0, 0, 1]


def test_a_candidate_over_the_time_limit_is_dropped(database, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_CANDIDATE_TIMEOUT_S", "0.2")
    runaway = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    candidates = checked(database, (runaway, -0.1), ("SELECT count(*) FROM singer", -9.0))
    assert candidates[0].error.startswith("Stopped: the query ran longer")
    assert choose(candidates) is candidates[1]


def test_identical_sql_is_checked_once(database, monkeypatch):
    runs = []
    original = database.sandbox.run
    monkeypatch.setattr(database.sandbox, "run", lambda sql, **kw: runs.append(sql) or original(sql, **kw))
    candidates = checked(database, *[("SELECT count(*) FROM singer", -1.0 - i) for i in range(3)])
    assert runs == ["SELECT count(*) FROM singer"]
    assert choose(candidates) is candidates[0] and candidates[0].votes == 3


def test_nothing_is_chosen_when_nothing_ran(database):
    assert choose(checked(database, ("SELECT nme FROM singer", -1.0))) is None
    assert choose([]) is None


# ---------------------------------------------------------------------------
# The whole round: answer_batch with the fake model


def test_k_candidates_for_every_question_come_from_one_batched_call(fake_model, database):
    questions = ["How many singers?", "Who is the oldest?", "How many concerts?"]
    fake_model.enqueue(*["SELECT count(*) FROM singer"] * 4, *["SELECT name FROM singer ORDER BY age DESC LIMIT 1"] * 4,
                       *["SELECT count(*) FROM concert"] * 4)
    answers = answer_batch(load_generator(), database, questions, Decoding.best_of(4, 0.7))
    assert fake_model.calls == [("sample", 3, 4)]
    assert [a.result.rows for a in answers] == [[(3,)], [("Bob",)], [(3,)]]
    assert all(len(a.generation.candidates) == 4 and a.generation.repair is None for a in answers)
    assert answers[0].generation.decoding == Decoding(BEST_OF_K, 4, 0.7)


def test_when_every_candidate_fails_one_repair_round_feeds_the_error_back(fake_model, database):
    fake_model.enqueue(
        ("SELECT nme FROM singer", -0.3), ("SELECT singer_name FROM singer", -0.2), ("", -0.1),  # q1: all fail
        ("SELECT count(*) FROM singer", -1.0), ("SELECT count(*) FROM singerz", -0.5), ("SELECT 3", -2.0),  # q2 is fine
        # q1's repairs, drawn like its candidates: the most likely writes the failed query again
        ("SELECT singer_name FROM singer", -0.1), ("SELECT name FROM singer", -0.4), ("SELECT nam FROM singer", -0.2),
    )
    answers = answer_batch(load_generator(), database, ["Names of singers?", "How many singers?"], Decoding.best_of(3))
    assert fake_model.calls == [("sample", 2, 3), ("sample", 1, 3)]  # one repair round, for q1 only
    repair_prompt = fake_model.history[-1]
    assert repair_prompt[:2] == fake_model.history[0]  # the same conversation, continued
    assert repair_prompt[2] == {"role": "assistant", "content": "SELECT singer_name FROM singer"}  # most likely with SQL
    assert repair_prompt[3]["content"].startswith(
        "Running that query failed: no such column: singer_name (not a column of singer"
    )
    first, second = answers
    assert first.generation.sql == "SELECT name FROM singer" and first.generation.repair.ran
    assert first.result.rows == [("Ann",), ("Bob",), ("Cy",)]
    assert [c.votes for c in first.generation.candidates] == [0, 0, 0]
    assert second.generation.repair is None and second.result.rows == [(3,)]
    assert second.generation.sql == "SELECT count(*) FROM singer"  # two votes for 3 beat the more likely failure


def test_a_failed_repair_is_the_answer_with_its_error(fake_model, database):
    fake_model.enqueue("SELECT nme FROM singer", "SELECT nme FROM singer",
                       ("SELECT nmae FROM singer", -2.0), ("SELECT naem FROM singer", -0.5))  # the repairs
    answer = ask(database, "Names?", decoding=Decoding.best_of(2))
    assert answer.generation.sql == "SELECT naem FROM singer"  # the most likely repair
    assert answer.result.error.startswith("no such column: naem") and not answer.result.ok


def test_a_repair_without_sql_falls_back_to_the_most_likely_candidate(fake_model, database):
    fake_model.enqueue(("SELECT nme FROM singer", -3.0), ("SELECT x FROM singer", -1.0), "I can't do that.", "Sorry.")
    answer = ask(database, "Names?", decoding=Decoding.best_of(2))
    assert answer.generation.sql == "SELECT x FROM singer" and answer.generation.repair.sql == ""
    assert answer.result.error.startswith("no such column: x")


def test_on_a_pasted_schema_the_most_likely_candidate_that_compiles_wins(fake_model):
    database = Database.from_text("Table: users\nColumns: id, name, age")
    fake_model.enqueue(("SELECT nme FROM users", -0.1), ("SELECT count(*) FROM users", -2.0),
                       ("SELECT count(id) FROM users WHERE age > 0", -1.0))
    answer = ask(database, "How many users?", decoding=Decoding.best_of(3))
    assert answer.generation.sql == "SELECT count(id) FROM users WHERE age > 0"
    assert answer.result.ok and answer.result.rows == []


def test_greedy_is_one_generate_call_and_runs_the_answer(fake_model, database):
    fake_model.enqueue("```sql\nSELECT count(*) FROM singer;\n```")
    answer = ask(database, "How many singers?")
    assert fake_model.calls == [("generate", 1, 1)]
    assert answer.generation.sql == "SELECT count(*) FROM singer" and answer.generation.chatty
    assert answer.result.rows == [(3,)] and answer.generation.candidates == []


def test_a_greedy_answer_with_a_column_on_the_wrong_table_is_put_right_and_says_so(fake_model, database):
    fake_model.enqueue("SELECT T1.name FROM concert AS T1 JOIN singer AS T2 ON T2.id = T1.singer_id WHERE T1.year = '2015'")
    answer = ask(database, "Who sang in 2015?")
    assert answer.generation.sql == (
        "SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T2.id = T1.singer_id WHERE T1.year = '2015'")
    assert answer.result.rows == [("Ann",)]
    assert answer.generation.warnings == ["Names the model got wrong were put right: T1.name -> T2.name"]


def test_a_greedy_answer_that_left_out_a_table_gets_its_join(fake_model, database):
    fake_model.enqueue("SELECT name FROM concert WHERE year = '2015'")  # name is the singer's
    answer = ask(database, "Who sang in 2015?")
    assert answer.generation.sql == "SELECT name FROM concert JOIN singer ON concert.singer_id = singer.id WHERE year = '2015'"
    assert answer.result.rows == [("Ann",)]
    assert answer.generation.warnings == [
        "Names the model got wrong were put right: name: joined singer on concert.singer_id = singer.id"]


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_with_the_setting_off_the_sql_runs_as_written(fake_model, database, monkeypatch, value):
    monkeypatch.setenv("TEXT2SQL_FIX_COLUMN_NAMES", value)
    wrong_alias = "SELECT T1.name FROM concert AS T1 JOIN singer AS T2 ON T2.id = T1.singer_id"
    fake_model.enqueue(wrong_alias)
    answer = ask(database, "Who sang?")
    assert answer.generation.sql == wrong_alias and answer.generation.warnings == []
    assert "no such column: T1.name" in answer.result.error


def test_a_setting_that_is_not_a_yes_or_no_is_refused(monkeypatch):
    from text2sql.settings import get_settings

    monkeypatch.setenv("TEXT2SQL_FIX_COLUMN_NAMES", "maybe")
    with pytest.raises(ValueError, match="TEXT2SQL_FIX_COLUMN_NAMES='maybe' is not a valid bool"):
        get_settings()


def test_put_right_candidates_count_only_where_none_ran_as_written(database):
    wrong_alias = "SELECT T2.country FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id WHERE T2.year = '2014'"
    candidates = checked(database, (wrong_alias, -0.2), (wrong_alias, -0.3), ("SELECT country FROM singer WHERE age > 40", -0.9))
    assert candidates[0].sql == wrong_alias.replace("T2.country", "T1.country") and candidates[0].result.rows
    assert candidates[0].fixes == ["T2.country -> T1.country"]
    assert choose(candidates) is candidates[2]  # ran as written: the two put right don't vote
    assert [c.votes for c in candidates] == [0, 0, 1]

    candidates = checked(database, (wrong_alias, -0.2), (wrong_alias, -0.3), ("SELECT nme FROM singer", -0.1))
    assert choose(candidates) is candidates[0] and [c.votes for c in candidates] == [2, 2, 0]
    assert candidates[0].as_dict()["fixes"] == ["T2.country -> T1.country"]
    check_candidates(candidates[:1], database.schema, database.sandbox, database.has_data)  # checked again
    assert candidates[0].fixes == ["T2.country -> T1.country"]


def test_the_time_reported_is_each_questions_share_of_sampling_and_checks(fake_model, database, monkeypatch):
    original = database.sandbox.run
    monkeypatch.setattr(database.sandbox, "run", lambda sql, **kw: time.sleep(0.2) or original(sql, **kw))
    answers = answer_batch(load_generator(), database, ["a?", "b?", "c?"], Decoding.best_of(2))  # one run each
    times = [a.generation.execution_time_ms for a in answers]
    assert len(set(times)) == 1 and 200 <= times[0] < 400


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"mode": "beam"}, "Unknown decoding mode 'beam'; choose one of: greedy, best-of-k, auto."),
        ({"mode": AUTO, "k": 1}, "Auto needs k between 2 and 32, not 1."),
        ({"mode": BEST_OF_K, "k": 1}, "Best-of-k needs k between 2 and 32, not 1."),
        ({"mode": BEST_OF_K, "k": 33}, "Best-of-k needs k between 2 and 32, not 33."),
        ({"mode": BEST_OF_K, "k": 4, "temperature": -1}, "The temperature must not be negative"),
    ],
)
def test_bad_decodings_are_refused_with_a_reason(arguments, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        Decoding(**arguments)


def test_decoding_from_a_mode_name_uses_the_settings(monkeypatch):
    monkeypatch.setenv("TEXT2SQL_BEST_OF_K", "6")
    monkeypatch.setenv("TEXT2SQL_SAMPLING_TEMPERATURE", "0.5")
    assert Decoding.from_mode("") == Decoding.from_mode(GREEDY) == Decoding()
    assert Decoding.from_mode(BEST_OF_K) == Decoding(BEST_OF_K, 6, 0.5)
    assert Decoding.from_mode(BEST_OF_K, k=8, temperature=1.0).as_dict() == {
        "mode": BEST_OF_K, "k": 8, "temperature": 1.0, "seed": 0}
    monkeypatch.setenv("TEXT2SQL_AUTO_K", "5")
    assert Decoding.from_mode(AUTO) == Decoding(AUTO, 5, 0.5)
    with pytest.raises(ValueError, match="Unknown decoding mode 'fast'"):
        Decoding.from_mode("fast")


# ---------------------------------------------------------------------------
# Auto: greedy, and best-of-k only where the greedy answer fails or returns nothing


def test_auto_keeps_greedy_answers_that_return_rows_and_escalates_the_others_in_one_call(fake_model, database):
    questions = ["How many singers?", "Singers from Chile?", "Their names?", "Average age in Peru?"]
    fake_model.enqueue(
        "SELECT count(*) FROM singer",  # kept
        "SELECT name FROM singer WHERE country = 'Chile'",  # runs, no rows
        "SELECT nme FROM singer",  # fails the schema check
        "SELECT avg(age) FROM singer WHERE country = 'Chile'",  # one row of NULL
        *[("SELECT name FROM singer WHERE country = 'Chile'", -0.1), ("SELECT name FROM singer", -0.5)],
        *[("SELECT nme FROM singer", -0.1), ("SELECT name FROM singer", -0.5)],
        *[("SELECT avg(age) FROM singer WHERE country = 'Chile'", -0.1), ("SELECT avg(age) FROM singer", -0.9)],
    )
    answers = answer_batch(load_generator(), database, questions, Decoding(AUTO, 2, 0.8))
    assert fake_model.calls == [("sample", 4, 1), ("sample", 3, 2)]
    kept, empty, failed, nulls = answers
    assert kept.result.rows == [(3,)] and kept.generation.answered_by == GREEDY and kept.generation.candidates == []
    assert kept.generation.escalation is None
    assert how_answered(kept.generation) == (
        "Auto: the greedy answer passed every check, so it was kept; no other candidates were drawn.")
    assert empty.generation.escalation == "returned no rows" and empty.generation.answered_by == BEST_OF_K
    assert empty.generation.sql == "SELECT name FROM singer"  # rows first
    assert failed.generation.escalation.startswith("failed: no such column: nme")
    assert failed.result.rows == [("Ann",), ("Bob",), ("Cy",)]
    assert nulls.generation.escalation == "returned only NULLs" and nulls.result.rows == [(32.0,)]
    assert how_answered(failed.generation).startswith(
        "Auto: the greedy answer failed: no such column: nme (not a column of singer")
    assert how_answered(failed.generation).endswith(
        "so 2 candidates were voted on. Best of 2 (temperature 0.8): 1 of 2 candidates ran, 1 of them agree on this result.")
    assert all(a.generation.decoding == Decoding(AUTO, 2, 0.8) for a in answers)


def test_auto_on_a_pasted_schema_keeps_a_greedy_answer_that_compiles(fake_model):
    database = Database.from_text("Table: users\nColumns: id, name, age")
    fake_model.enqueue("SELECT count(*) FROM users WHERE age > 30")
    answer = ask(database, "How many users are older than 30?", decoding=Decoding(AUTO, 3, 0.8))
    assert fake_model.calls == [("sample", 1, 1)]
    assert answer.generation.answered_by == GREEDY and answer.result.ok and answer.result.rows == []


def test_auto_runs_the_greedy_answer_under_the_query_time_limit(fake_model, database, monkeypatch):
    """Not the shorter limit of a best-of-k candidate: greedy mode would have run it for that long."""
    seen = []
    original = database.sandbox.run
    monkeypatch.setattr(database.sandbox, "run", lambda sql, **kw: seen.append(kw.get("timeout_s")) or original(sql, **kw))
    monkeypatch.setenv("TEXT2SQL_QUERY_TIMEOUT_S", "4.5")
    fake_model.enqueue("SELECT count(*) FROM singer")
    ask(database, "How many singers?", decoding=Decoding(AUTO, 2, 0.8))
    assert seen == [4.5]


def test_auto_where_nothing_runs_gets_best_of_ks_repair_round(fake_model, database):
    fake_model.enqueue("SELECT nme FROM singer", "SELECT nme FROM singer", "SELECT nmae FROM singer",  # greedy, 2 candidates
                       "SELECT name FROM singer WHERE age > 40", "SELECT nam FROM singer")  # 2 repairs
    answer = ask(database, "Names of singers over 40?", decoding=Decoding(AUTO, 2, 0.8))
    assert fake_model.calls == [("sample", 1, 1), ("sample", 1, 2), ("sample", 1, 2)]
    assert answer.generation.repair.ran and answer.result.rows == [("Bob",)]
    assert "the model repaired the most likely one, given its error, and it ran." in how_answered(answer.generation)


def test_schema_tables_shows_each_prompt_only_its_likely_tables_and_skips_the_warm_up(fake_model, database, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_SCHEMA_TABLES", "1")
    fake_model.enqueue("SELECT count(*) FROM concert", "SELECT name FROM singer")
    answers = answer_batch(load_generator(), database, ["How many concerts?", "Names of every singer?"])
    concert_prompt, singer_prompt = (messages[1]["content"] for messages in fake_model.history)
    assert "CREATE TABLE concert" in concert_prompt and "CREATE TABLE singer" not in concert_prompt
    assert "CREATE TABLE singer" in singer_prompt and "CREATE TABLE concert" not in singer_prompt
    assert "left out: singer" in answers[0].generation.warnings[-1]
    assert [a.result.rows for a in answers] == [[(3,)], [("Ann",), ("Bob",), ("Cy",)]]
    warm_up(database)
    assert fake_model.prefilled == []  # no prefix is shared by every question
    monkeypatch.setenv("TEXT2SQL_SCHEMA_TABLES", "2")
    warm_up(database)
    assert len(fake_model.prefilled) == 1
