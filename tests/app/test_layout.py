"""What a person sees, measured in a real browser (Playwright driving Debian's chromium, fake
models): no horizontal scroll at 1280 px, table columns wide enough to read, nothing drawn over
the SQL, Compare's columns filling the row, a usable phone layout, a chart beside a result.
Each test writes a screenshot for review (tmp_path, or TEXT2SQL_SCREENSHOT_DIR to keep them).

    TEXT2SQL_SCREENSHOT_DIR=/tmp/shots python -m pytest tests/app/test_layout.py -v
"""

import os

import pytest

from tests.app.conftest import CHROMIUM, sync_playwright
from tests.app.test_browser import save_screenshot

pytestmark = pytest.mark.skipif(not (CHROMIUM and sync_playwright) and not os.environ.get("CI"),
                                reason="needs Debian's chromium and playwright")

LONG_SQL = ("SELECT c.name, c.city, count(o.id) AS orders FROM customers AS c JOIN orders AS o "
            "ON o.customer_id = c.id GROUP BY c.id ORDER BY orders DESC")


def open_page(browser, server_url, width: int, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(30_000)
    page.goto(server_url)
    page.locator("#question textarea").wait_for()
    return page


@pytest.fixture
def page(browser, server_url):
    page = open_page(browser, server_url, 1280)
    yield page
    page.close()


def horizontal_overflow(page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def text_covered_by_buttons(page, box: str) -> list[str]:
    """The lines of a code box whose text lies under one of the box's floating buttons."""
    return page.evaluate("""(box) => {
        const root = document.querySelector(box);
        const buttons = [...root.querySelectorAll('button')].map(b => b.getBoundingClientRect())
            .filter(r => r.width > 0);
        const covered = [];
        for (const line of root.querySelectorAll('.cm-line')) {
            const range = document.createRange();
            range.selectNodeContents(line);
            for (const text of range.getClientRects()) {
                if (buttons.some(b => text.left < b.right && text.right > b.left && text.top < b.bottom
                                      && text.bottom > b.top)) covered.push(line.textContent);
            }
        }
        return covered;
    }""", box)


def ask(page, fake_models, question: str, *outputs) -> None:
    fake_models.enqueue(*outputs)
    page.locator("#question textarea").fill(question)
    page.locator("#generate").click()
    page.locator("#status").get_by_text("row").wait_for()


def test_the_candidates_table_is_readable_and_the_page_fits_1280_px(page, fake_models, tmp_path):
    ask(page, fake_models, "Orders per customer?", "SELECT nme FROM customers",  # auto escalates to 8 candidates
        *[("SELECT name FROM customers WHERE city = 'Lyon' ORDER BY name", -1.0)] * 4, *[(LONG_SQL, -0.5)] * 4)
    candidates = page.locator("#candidates")
    candidates.locator("th").first.wait_for()
    headers = candidates.locator("th").evaluate_all(
        "cells => cells.map(c => ({text: c.innerText.trim(), width: c.offsetWidth, height: c.offsetHeight}))")
    assert [h["text"] for h in headers] == ["#", "votes", "log-lik.", "SQL", "problem", "score", "reason"]
    line_height = min(h["height"] for h in headers)
    assert all(h["height"] <= line_height * 1.5 for h in headers), headers  # no header broken over lines
    table_width = sum(h["width"] for h in headers)
    assert all(headers[i]["width"] >= 0.18 * table_width for i in (3, 4, 6)), headers  # SQL, problem, reason
    # The long SQL wraps inside its cell instead of being cut off.
    clipped = candidates.locator("td").evaluate_all(
        "cells => cells.filter(c => c.innerText.trim() && c.scrollWidth > c.clientWidth + 1).map(c => c.innerText)")
    assert clipped == []
    assert text_covered_by_buttons(page, "#sql") == []
    assert horizontal_overflow(page) <= 0
    save_screenshot(page, tmp_path, "layout-ask-1280")


def test_a_category_and_a_number_are_charted_beside_the_table(page, fake_models, tmp_path):
    ask(page, fake_models, "Customers per city?", "SELECT city, count(*) AS customers FROM customers GROUP BY city")
    chart = page.locator("#result-bars")
    chart.locator("canvas, svg").first.wait_for()
    assert chart.bounding_box()["height"] > 150 and not page.locator("#result-line").is_visible()
    save_screenshot(page, tmp_path, "layout-chart")


def test_compare_fills_the_row_and_shows_a_failure_with_what_the_model_wrote(page, fake_models, tmp_path):
    fake_models.enqueue(LONG_SQL, "There are many customers, but I can't write SQL for this.")
    page.get_by_role("tab", name="Compare models").click()
    page.locator("#compare-question textarea").fill("Orders per customer?")
    page.locator("#compare-mode").get_by_label("Fast").check()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.locator("#agreement").get_by_text("Only fake answered; fake-b failed").wait_for()
    row = page.locator("#compare-results").bounding_box()
    slots = page.locator(".compare-slot").evaluate_all("slots => slots.filter(s => s.offsetWidth > 0)"
                                                       ".map(s => s.offsetWidth)")
    assert len(slots) == 2 and all(width >= 0.4 * row["width"] for width in slots), (slots, row)
    assert page.get_by_text("I can't write SQL for this.").is_visible()
    assert text_covered_by_buttons(page, "#compare-sql-0") == []
    assert horizontal_overflow(page) <= 0
    save_screenshot(page, tmp_path, "layout-compare-1280")


def test_only_models_that_can_answer_are_ticked_for_compare(page):
    page.get_by_role("tab", name="Compare models").click()
    page.locator("#compare-models input").first.wait_for()
    ticked = page.locator("#compare-models label").evaluate_all(
        "labels => labels.filter(l => l.querySelector('input').checked).map(l => l.innerText.trim())")
    assert ticked == ["fake", "fake-b"]  # no evaluation runs here: the default, then registry order


def test_on_a_phone_the_question_comes_before_the_schema(browser, server_url, tmp_path):
    page = open_page(browser, server_url, 390, 844)
    try:
        question = page.locator("#question textarea").bounding_box()
        schema = page.locator("#ddl").bounding_box()
        assert question["y"] < schema["y"] and question["y"] < 844  # on the first screen
        assert page.locator("#ddl").evaluate("box => box.getBoundingClientRect().height") < 400  # it scrolls
        assert horizontal_overflow(page) <= 0
        save_screenshot(page, tmp_path, "layout-phone")
    finally:
        page.close()
