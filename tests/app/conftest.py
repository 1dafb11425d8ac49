"""Fixtures for the web app's tests: three fake models, the app built on them, and the app
served on a free local port (uvicorn in a thread), as `python app.py` serves it.

    python -m pytest tests/app -v
"""

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

# Gradio's upload cache in a throwaway folder (read when gradio is imported).
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="text2sql-test-gradio-"))

import pytest  # noqa: E402

from examples.build import build_all  # noqa: E402
from tests.fakes import FakeGenerator  # noqa: E402
from text2sql import engine  # noqa: E402
from text2sql.registry import default_registry  # noqa: E402

# The keys of every POST /generate_sql answer (REST and gradio_client): the contract app.py documents.
GENERATED = {"sql", "execution_time_ms", "model", "valid", "error", "decoding", "warnings"}

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


FAKE_REGISTRY = """
default: fake
models:
  fake: {title: Fake model, backend: fake, base: {path: .}}
  fake-b: {title: Second fake model, backend: fake, base: {path: .}}
  fake-c: {title: Third fake model, backend: fake, base: {path: .}}
"""


@pytest.fixture(scope="module")
def fake_models(tmp_path_factory):
    """A registry of three fake models (one shared queue of canned outputs: FakeGenerator)."""
    registry = tmp_path_factory.mktemp("registry") / "models.yaml"
    registry.write_text(FAKE_REGISTRY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXT2SQL_REGISTRY", str(registry))
        engine.register_backend("fake", FakeGenerator)
        engine.unload_all()
        default_registry.cache_clear()
        yield FakeGenerator
    FakeGenerator.reset()
    engine.unload_all()
    default_registry.cache_clear()
    engine.BACKENDS.pop("fake", None)


@pytest.fixture(autouse=True)
def empty_queue():
    FakeGenerator.reset()
    yield
    FakeGenerator.reset()


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    """The app's own files: built examples, and users' private copies under uploads/."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def app_parts(fake_models, results_dir, work_dir):
    """(demo, app, service) from app.create(), on the fake models, the default one loaded (as
    `python app.py` loads it at startup: /health says ok)."""
    import app

    demo, served, service = app.create(results_dir=results_dir, work_dir=work_dir)
    service.warm_up()
    return demo, served, service


@pytest.fixture(scope="module")
def example_dbs(tmp_path_factory) -> dict[str, Path]:
    """The example databases, built where a user would have them (for uploading)."""
    return build_all(tmp_path_factory.mktemp("examples"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(app):
    """Serve ``app`` with uvicorn on a free local port (as `python app.py` does); yields its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))  # clients keep SSE streams open
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app's server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(app_parts):
    """The FastAPI app (REST + mounted Gradio) on the fake models, served on a free port."""
    with serve(app_parts[1]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by Playwright (tests/app/test_browser.py, test_layout.py)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
