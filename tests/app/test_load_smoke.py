"""A short run of benchmarks/load_test.py (4 clients for 3 s, fake model, the server in a
subprocess): the harness works and every request is answered. The figures in SECURITY.md come
from the full runs.

    python -m pytest tests/app/test_load_smoke.py -v
"""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_short_load_run_answers_every_request_and_leaves_no_file():
    run = subprocess.run([sys.executable, "-m", "benchmarks.load_test", "--clients", "4", "--duration", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for kind in (r"/run_sql \(upload \+ run\)", "REST /generate_sql"):
        sent, ok, refused, errors, lost = map(int, re.search(kind + r"\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)",
                                                             run.stdout).groups())
        assert sent > 0 and sent == ok + refused and errors == lost == 0
    assert "files left in its TMPDIR and GRADIO_TEMP_DIR: 0" in run.stdout
