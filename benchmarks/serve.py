"""Serve the app as `python app.py` does, optionally on a fast fake model (for load tests), and
start/stop it as a subprocess whose temporary files can be checked afterwards.

    python -m benchmarks.serve --fake --port 7861     # every model answers "SELECT 1" at once
    python -m benchmarks.serve --port 7861            # the real registry (embedded Qwen by default)

The fake is tests/fakes.py's FakeGenerator, registered as backend "fake" in this process, with
benchmarks/fake_models.yaml as the registry. Listens on 127.0.0.1 only.

    with ServerProcess(fake=True) as server:          # a fresh TMPDIR and GRADIO_TEMP_DIR
        httpx.get(server.url + "health")
    print(server.exit_code, server.leftovers)         # after SIGTERM: files it left behind
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

FAKE_REGISTRY = Path(__file__).with_name("fake_models.yaml")
REPO = Path(__file__).resolve().parents[1]


def use_fake_model() -> None:
    from tests.fakes import FakeGenerator
    from text2sql import engine

    os.environ["TEXT2SQL_REGISTRY"] = str(FAKE_REGISTRY)
    engine.register_backend("fake", FakeGenerator)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """The app in a subprocess on a free loopback port, with its own empty TMPDIR and
    GRADIO_TEMP_DIR; stopped with SIGTERM (as a container runtime would). ``leftovers``: every
    file still under those folders once it has exited."""

    def __init__(self, fake: bool = True, env: dict[str, str] | None = None, start_timeout_s: float = 180):
        self.fake, self.extra_env, self.start_timeout_s = fake, env or {}, start_timeout_s
        self.root = Path(tempfile.mkdtemp(prefix="text2sql-server-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.exit_code: int | None = None
        self.leftovers: list[str] = []

    def __enter__(self) -> ServerProcess:
        (self.root / "tmp").mkdir()
        (self.root / "gradio").mkdir()
        env = {**os.environ, "TMPDIR": str(self.root / "tmp"), "GRADIO_TEMP_DIR": str(self.root / "gradio"),
               "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "PYTHONPATH": str(REPO), **self.extra_env}
        command = [sys.executable, "-m", "benchmarks.serve", "--port", str(self.port)] + (["--fake"] if self.fake else [])
        self.log = open(self.root / "server.log", "wb")
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not answer within {self.start_timeout_s:g} s:\n{self.log_text()}")

    def log_text(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")[-3000:]

    def stop(self, timeout_s: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode
        self.log.close()
        self.leftovers = sorted(str(path.relative_to(self.root)) for folder in ("tmp", "gradio")
                                for path in (self.root / folder).rglob("*") if not path.is_dir())

    def __exit__(self, *exc_info) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="serve a fake model that answers at once")
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()
    if args.fake:
        use_fake_model()  # before app is imported: it reads the registry when it builds the UI
    os.environ["GRADIO_SERVER_NAME"] = "127.0.0.1"
    os.environ["GRADIO_SERVER_PORT"] = str(args.port)
    import app

    app.main()


if __name__ == "__main__":
    main()
