"""The robustness check: evaluate on reworded questions (--questions) and measure how often
questions repeat schema names (evaluation.schema_words).

    python -m pytest tests/test_robustness_eval.py -v
"""

import json

import pytest

from evaluation import evaluate, schema_words
from tests.conftest import SPIDER
from text2sql.spider import Spider


pytestmark = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def questions_file(path, examples, wording="reworded {id}"):
    path.write_text(
        "".join(
            json.dumps({"id": e.id, "db_id": e.db_id, "question": e.question, "reworded": wording.format(id=e.id)}) + "\n"
            for e in examples
        )
    )
    return path


@pytest.fixture(scope="module")
def club():
    """Four questions of club_1, a database the training split holds out."""
    return [e for e in Spider(SPIDER).examples("train") if e.db_id == "club_1"][:4]


def test_evaluate_asks_the_reworded_questions_and_resumes(fake_model, tmp_path, club):
    path = questions_file(tmp_path / "q.jsonl", club[1:4])
    fake_model.enqueue(*[e.query for e in club[1:4]])
    out = tmp_path / "run"
    args = ["--model", "fake", "--spider", str(SPIDER), "--split", "train", "--out", str(out), "--workers", "1"]
    evaluate.main(args + ["--questions", str(path), "--batch-size", "2"])
    predictions = lines(out / "predictions.jsonl")
    assert [p["id"] for p in predictions] == [e.id for e in club[1:4]]  # only the file's ids
    assert [p["question"] for p in predictions] == [f"reworded {e.id}" for e in club[1:4]]
    assert [p["original_question"] for p in predictions] == [e.question for e in club[1:4]]
    asked = [prompt[-1]["content"] for prompt in fake_model.history]
    assert [text.rsplit("Question: ", 1)[1] for text in asked] == [f"reworded {e.id}" for e in club[1:4]]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["ex"] == 1.0  # scored against the gold of the same ids

    calls = len(fake_model.history)
    evaluate.main(args + ["--questions", str(path)])  # resumed: nothing left to ask
    assert len(fake_model.history) == calls
    with pytest.raises(SystemExit, match="not in Spider's wording"):
        evaluate.main(args)
    other = questions_file(tmp_path / "other.jsonl", club[1:4], wording="put otherwise {id}")
    with pytest.raises(SystemExit, match="not in the --questions file's wording"):
        evaluate.main(args + ["--questions", str(other)])
    assert len(fake_model.history) == calls


def test_a_questions_file_that_does_not_match_the_split_is_refused(fake_model, tmp_path, club):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"id": club[0].id, "db_id": club[0].db_id, "question": "Something else?", "reworded": "x"}) + "\n")
    args = ["--model", "fake", "--spider", str(SPIDER), "--split", "train", "--out", str(tmp_path / "run"), "--questions", str(path)]
    with pytest.raises(SystemExit, match=r"line 1: question 'Something else\?' differs from Spider's .*--split train"):
        evaluate.main(args)
    with pytest.raises(SystemExit, match="No such file"):
        evaluate.main(args[:-1] + [str(tmp_path / "missing.jsonl")])
    assert not fake_model.history


def test_names_count_as_mentioned_only_word_for_word():
    names = ["pet_type", "PetType", "Pets", "weight", "StuID"]
    assert schema_words.mentioned("Which pet types are the heaviest?", names) == ["pet_type", "PetType", "Pets"]
    assert schema_words.mentioned("Which type of pet weighs most?", names) == ["Pets"]
    assert schema_words.mentioned("What is the stu id of each pet's owner", names) == ["Pets", "StuID"]


def test_schema_words_compares_the_two_wordings(tmp_path, capsys):
    example = Spider(SPIDER).examples("train")[0]
    assert example.question == "How many heads of the departments are older than 56 ?"
    path = questions_file(tmp_path / "q.jsonl", [example], wording="How many agency leaders are over 56 ?")
    schema_words.main([str(path), "--spider", str(SPIDER)])
    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == "| Spider's | 1 | 100.0% | 0.0% | 2.00 |"  # tables head and department
    assert rows[3] == f"| {path} | 1 | 0.0% | 0.0% | 0.00 |"
