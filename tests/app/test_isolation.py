"""Isolation between users and cleanup of their files: two gradio_client sessions and two browser
sessions upload different databases at the same time and each sees only its own; a closed
session's private copy is deleted; a stopped server (SIGTERM, with clients still connected)
leaves no file behind.

    python -m pytest tests/app/test_isolation.py -v
"""

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from benchmarks.serve import ServerProcess
from tests.app.conftest import CHROMIUM, CHROMIUM_FLAGS, sync_playwright
from tests.app.test_browser import replace_sql
from tests.conftest import build_db, sha256_of

LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
needs_browser = pytest.mark.skipif(not (CHROMIUM and sync_playwright), reason="needs Debian's chromium and playwright")


@pytest.fixture(scope="module")
def user_dbs(tmp_path_factory):
    """Two users' databases: different tables, different secrets."""
    folder = tmp_path_factory.mktemp("users")
    return {
        "ann": build_db(folder / "ann.sqlite", "CREATE TABLE ann_only (secret TEXT); INSERT INTO ann_only VALUES ('ann-1');"),
        "bob": build_db(folder / "bob.sqlite", "CREATE TABLE bob_only (secret TEXT); INSERT INTO bob_only VALUES ('bob-2');"),
    }


def test_two_client_sessions_at_once_each_see_only_their_database(server_url, fake_models, user_dbs, work_dir):
    start, problems = threading.Barrier(2), []

    def user(name: str) -> None:
        client = Client(server_url, verbose=False)
        start.wait()
        for _ in range(8):
            result = client.predict(database=handle_file(user_dbs[name]), sql=LIST_TABLES, api_name="/run_sql")
            if result["rows"] != [[f"{name}_only"]]:
                problems.append((name, result))
            client.predict(database=handle_file(user_dbs[name]), question="Secrets?", api_name="/generate_sql")

    threads = [threading.Thread(target=user, args=(name,)) for name in user_dbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert problems == []
    prompts = [messages[1]["content"] for messages in fake_models.history]
    assert len(prompts) == 16
    assert all(("ann_only" in p) != ("bob_only" in p) for p in prompts)  # each prompt saw one database
    assert list((work_dir / "uploads").iterdir()) == []


def run_sql_by_raw_path(server_url, path) -> str:
    """/run_sql with a FileData naming a server path, over raw HTTP (gradio_client would upload
    a local path's bytes itself): the event stream's text."""
    data = ["", LIST_TABLES, {"path": str(path), "meta": {"_type": "gradio.FileData"}}]
    event = httpx.post(server_url + "gradio_api/call/run_sql", json={"data": data}).json()["event_id"]
    return httpx.get(server_url + f"gradio_api/call/run_sql/{event}", timeout=30).text


def test_a_client_cannot_name_another_users_private_copy_or_any_server_file(server_url, user_dbs, work_dir):
    """Only files uploaded through Gradio may be named. (Gradio skips that check when the app is
    mounted rather than launched: /etc/passwd used to be copied into its cache and opened.)"""
    private = work_dir / "uploads" / "session-someone" / "copy.sqlite"
    private.parent.mkdir(parents=True)
    private.write_bytes(user_dbs["ann"].read_bytes())
    cache_before = sorted(Path(os.environ["GRADIO_TEMP_DIR"]).rglob("*"))
    try:
        for path in (private, work_dir / "examples" / "shop.sqlite", "/etc/passwd"):
            stream = run_sql_by_raw_path(server_url, path)
            assert stream.startswith("event: error") and "ann_only" not in stream and "SQLite" not in stream, path
        assert httpx.get(server_url + f"gradio_api/file={private}").status_code == 403
    finally:
        private.unlink()
        private.parent.rmdir()
    assert sorted(Path(os.environ["GRADIO_TEMP_DIR"]).rglob("*")) == cache_before  # nothing copied in


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def upload_and_list_tables(page, path) -> None:
    page.get_by_label("Upload a SQLite file").check()
    page.locator("#upload input[type=file]").set_input_files(path)
    page.locator("#schema-summary").get_by_text(path.name).wait_for()
    replace_sql(page, LIST_TABLES)
    page.locator("#run").click()
    page.locator("#status").get_by_text("1 row").wait_for()


def session_folders(work_dir) -> dict:
    """Each session folder -> the sha256 of the private copies in it."""
    return {folder.name: sorted(sha256_of(copy) for copy in folder.glob("*.sqlite"))
            for folder in (work_dir / "uploads").glob("session-*")}


def wait_until(condition, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@needs_browser
def test_two_browser_sessions_each_see_only_their_upload_and_closing_one_deletes_its_copy(
        server_url, user_dbs, work_dir, browser, monkeypatch):
    # Gradio keeps a closed session's state an hour (for a reload); this flag makes it 1 s.
    monkeypatch.setenv("GRADIO_IS_E2E_TEST", "1")
    before = set(session_folders(work_dir))
    ann_page, bob_page = (browser.new_context().new_page() for _ in range(2))
    for page in (ann_page, bob_page):
        page.set_default_timeout(30_000)
        page.goto(server_url)
        page.locator("#question textarea").wait_for()
    upload_and_list_tables(ann_page, user_dbs["ann"])
    upload_and_list_tables(bob_page, user_dbs["bob"])
    for page, name in ((ann_page, "ann"), (bob_page, "bob")):
        page.locator("#run").click()  # again, now that both sessions hold an upload
        page.locator("#result").get_by_role("gridcell", name=f"{name}_only").wait_for()
        assert "_only" not in page.locator("#result").inner_text().replace(f"{name}_only", "")

    folders = {name: copies for name, copies in session_folders(work_dir).items() if name not in before}
    assert sorted(folders.values()) == sorted([[sha256_of(user_dbs["ann"])], [sha256_of(user_dbs["bob"])]])
    ann_folder = next(name for name, copies in folders.items() if copies == [sha256_of(user_dbs["ann"])])

    ann_page.context.close()
    assert wait_until(lambda: ann_folder not in session_folders(work_dir))
    assert [sha256_of(user_dbs["bob"])] in session_folders(work_dir).values()
    bob_page.context.close()


def test_a_stopped_server_leaves_no_file_even_with_clients_connected(user_dbs):
    """SIGTERM while a gradio_client (and, where chromium is present, a browser tab holding an
    upload) is still connected: the server stops within its grace period and deletes the
    uploads, their private copies and its work folder."""
    with ServerProcess(fake=True, env={"TEXT2SQL_SHUTDOWN_GRACE_S": "2"}) as server:
        client = Client(server.url, verbose=False)
        result = client.predict(database=handle_file(user_dbs["ann"]), sql=LIST_TABLES, api_name="/run_sql")
        assert result["rows"] == [["ann_only"]]
        playwright = sync_playwright().start() if CHROMIUM and sync_playwright else None
        if playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(server.url)
            upload_and_list_tables(page, user_dbs["bob"])
            assert list((server.root / "tmp").glob("text2sql-app-*/uploads/session-*/*.sqlite"))
        started = time.monotonic()
        server.stop()
        stopped_in = time.monotonic() - started
        if playwright:
            browser.close()
            playwright.stop()
    assert stopped_in < 2 + 5
    assert server.leftovers == []
