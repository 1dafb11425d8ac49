"""Serve the app as `python app.py` does, optionally on a fast fake model (for load tests).

    python -m benchmarks.serve --fake --port 7861     # every model answers "SELECT 1" at once
    python -m benchmarks.serve --port 7861            # the real registry (embedded Qwen by default)

The fake is tests/fakes.py's FakeGenerator, registered as backend "fake" in this process, with
benchmarks/fake_models.yaml as the registry. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

FAKE_REGISTRY = Path(__file__).with_name("fake_models.yaml")


def use_fake_model() -> None:
    from tests.fakes import FakeGenerator
    from text2sql import engine

    os.environ["TEXT2SQL_REGISTRY"] = str(FAKE_REGISTRY)
    engine.register_backend("fake", FakeGenerator)


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
