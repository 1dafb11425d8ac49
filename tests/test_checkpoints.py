"""Choosing a run's checkpoint on the held-out train questions (evaluation.checkpoints): the
milestones come from git history and the tree, an earlier attempt on other data is skipped,
each is evaluated once, and the best in Spider's wording is chosen.

    python -m pytest tests/test_checkpoints.py -v
"""

import json
import shutil
import subprocess

import pytest

from evaluation import checkpoints, evaluate
from tests.conftest import SPIDER
from text2sql.spider import Spider


pytestmark = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def write_milestone(folder, step, fingerprint, learning_rate):
    """As training.milestones does: the new milestone replaces the older ones in the folder."""
    shutil.rmtree(folder)
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (checkpoint / "data_fingerprint.txt").write_text(fingerprint + "\n")
    history = [{"step": s, "loss": 1.0 / s, "learning_rate": learning_rate} for s in range(1, step + 1)]
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    return checkpoint


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository whose run committed: an abandoned attempt's milestone 4 (data "old"), then
    the restarted run's milestone 4 (data "new"); its milestone 8 is in the tree, uncommitted."""
    repo = tmp_path / "repo"
    folder = repo / "training" / "milestones" / "run"
    folder.mkdir(parents=True)
    git(repo, "init", "-q")
    for fingerprint, rate in (("old", 2e-4), ("new", 1e-4)):
        write_milestone(folder, 4, fingerprint, rate)
        git(repo, "add", "-A")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"milestone 4 ({fingerprint})")
    write_milestone(folder, 8, "new", 5e-5)
    monkeypatch.chdir(repo)
    return repo


def test_milestones_come_from_history_and_the_tree_and_other_data_is_skipped(repo):
    milestones, skipped = checkpoints.find_milestones(repo, repo / "training/milestones/run", [])
    assert [(m.step, m.source == "tree") for m in milestones] == [(4, False), (8, True)]
    assert [(m.step, m.fingerprint) for m in skipped] == [(4, "old")]
    extracted = checkpoints.checked_out(milestones[0], repo, repo / "scratch")
    assert extracted.name == "checkpoint-4" and (extracted / "data_fingerprint.txt").read_text() == "new\n"
    assert checkpoints.training_state(extracted) == (1e-4, pytest.approx(sum(1 / s for s in range(1, 5)) / 4))


def test_a_folder_that_is_not_a_milestone_is_refused(repo, tmp_path):
    with pytest.raises(SystemExit, match="no step in its name"):
        checkpoints.find_milestones(repo, repo / "training/milestones/run", [tmp_path])
    with pytest.raises(SystemExit, match="No milestones"):
        checkpoints.find_milestones(repo, repo / "training/milestones/elsewhere", [])


def test_each_milestone_is_evaluated_once_and_the_best_is_chosen(repo, fake_model):
    club = [e for e in Spider(SPIDER).examples("train") if e.db_id == "club_1"]  # the file holds all of a database's
    questions = repo / "held_out.jsonl"
    questions.write_text("".join(
        json.dumps({"id": e.id, "db_id": e.db_id, "question": e.question, "reworded": f"put otherwise: {e.question}"}) + "\n"
        for e in club
    ))
    common = ["--spider", str(SPIDER), "--workers", "1"]
    fake_model.enqueue(club[0].query)  # the base model: the first right (an empty queue answers SELECT 1)
    evaluate.main(["--model", "fake", "--split", "train", "--databases", "club_1", "--out", "base-original", *common])
    fake_model.enqueue(*[e.query for e in club[:3]], *["SELECT 1"] * (len(club) - 3))  # milestone 4: the first 3
    fake_model.enqueue(club[0].query, club[1].query)  # milestone 8: the first 2
    args = ["--run", "run", "--model", "fake", "--questions", str(questions), "--baseline", "base", *common]
    checkpoints.main(args)

    runs = repo / "results" / "checkpoints" / "run"
    assert sorted(p.name for p in runs.iterdir()) == ["README.md", "step-4-original", "step-8-original"]
    models = {json.loads((runs / f"step-{s}-original" / "metrics.json").read_text())["model"] for s in (4, 8)}
    assert models == {"fake+run/checkpoint-4", "fake+run/checkpoint-8"}
    for step in (4, 8):  # the SQL as written, as the base run and earlier milestones were measured
        assert json.loads((runs / f"step-{step}-original" / "metrics.json").read_text())["fix_column_names"] is False
    readme = (runs / "README.md").read_text()
    ex = {s: json.loads((runs / f"step-{s}-original" / "metrics.json").read_text())["ex"] for s in (4, 8)}
    assert ex[4] > ex[8]  # (SELECT 1 happens to be right for a few of club_1's questions)
    assert f"Chosen: step 4 ({100 * ex[4]:.1f}% EX in Spider's wording)." in readme
    row = next(line for line in readme.splitlines() if line.startswith("| 4 | `"))
    assert f"| {100 * 2 / len(club):+.1f} (0 / 2, p = 0.5) |" in row  # right where the base was wrong: 2
    assert "Skipped, trained on other data than the newest milestone: step 4 at" in readme

    asked = len(fake_model.history)
    checkpoints.main(args)  # both are done: nothing is generated again
    assert len(fake_model.history) == asked
    checkpoints.main(args + ["--reworded", "--min-step", "8"])  # only step 8, in the file's wording
    assert [m[-1]["content"].rsplit("Question: ", 1)[1] for m in fake_model.history[asked:]] == [
        f"put otherwise: {e.question}" for e in club
    ]
    assert (runs / "step-8-reworded" / "metrics.json").is_file() and not (runs / "step-4-reworded").exists()
    assert f"| {100 * ex[4]:.1f} (" in next(line for line in (runs / "README.md").read_text().splitlines()
                                          if line.startswith("| 4 | `"))  # step 4 is still in the table
