"""The figures in SECURITY.md: the hostile SQL corpus (tests/hostile_sql.py) through every surface
that takes SQL, the hostile database corpus (tests/hostile_files.py) through every surface that
takes a file, and the isolation, hard-backstop and fuzzing checks, each counted from the tests
that assert it.

    python -m benchmarks.security_report          # about 5 minutes on 2 cores; exit 1 if any check fails

Every count is a pytest case that passed: for SQL, the statement was refused or stopped in time
and the database file and its folder are byte-for-byte unchanged (REST on a pasted schema:
returned as text, only compiled with EXPLAIN in the sandbox); for files, the file was refused with a reason or read safely, nothing
was written beside it or left in the app's folders, and the server still answers.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections import Counter
from dataclasses import asdict

import pytest

from tests.hostile_files import CORPUS
from tests.hostile_sql import HOSTILE
from text2sql.settings import get_settings

SQL_SURFACES = {
    ("tests/test_sandbox.py", "test_hostile_sql_is_refused_or_stopped_and_changes_nothing", "file-"):
        "core Sandbox on the file (mode=ro)",
    ("tests/test_sandbox.py", "test_hostile_sql_is_refused_or_stopped_and_changes_nothing", "private immutable copy-"):
        "core Sandbox on an upload's private copy",
    ("tests/test_sandbox.py", "test_hostile_sql_on_a_pasted_schema", ""): "core Sandbox on a pasted schema",
    ("tests/test_cli.py", "test_run_sql_refuses_or_stops_every_hostile_statement", ""): "CLI text2sql run-sql --db",
    ("tests/app/test_hostile_sql.py", "test_the_run_handler_refuses_or_stops_it", ""): "UI Run handler",
    ("tests/app/test_hostile_sql.py", "test_the_run_sql_endpoint_refuses_or_stops_it", ""):
        "gradio_client /run_sql (served)",
    ("tests/app/test_hostile_sql.py", "test_a_model_writing_it_through_ask_is_refused_stopped_or_cut_to_a_read", ""):
        "gradio_client /ask, model wrote it",
    ("tests/app/test_hostile_sql.py", "test_rest_generate_sql_returns_it_as_text_and_only_compiles_it", ""):
        "REST POST /generate_sql (EXPLAIN only)",
}
FILE_SURFACES = {
    ("tests/test_hostile_files.py", "test_broken_files_are_refused_with_a_reason"): "core Database.from_file",
    ("tests/test_hostile_files.py", "test_handled_files_change_nothing"): "core Database.from_file",
    ("tests/test_hostile_files.py", "test_the_cli_refuses_or_reads_each_file_and_writes_nothing"): "CLI --db",
    ("tests/app/test_hostile_files.py", "test_the_ui_upload_handler"): "UI upload handler (+ Run)",
    ("tests/app/test_hostile_files.py", "test_the_run_sql_endpoint"): "gradio_client /run_sql (served)",
    ("tests/app/test_hostile_files.py", "test_the_ask_endpoint"): "gradio_client /ask (served)",
}
OTHER_CHECKS = {
    "tests/app/test_isolation.py": "isolation: two users at once, session end, shutdown",
    "tests/test_workers.py": "hard backstop: killed workers, memory limit, result cap",
    "tests/test_fuzz.py": "fuzzing: 3 hypothesis properties x 300 inputs, deep nesting",
    "tests/app/test_rest.py": "REST contract and limits (body size, queue)",
}


class Outcomes:
    """A pytest plugin keeping each test's (file, function, parameter id) -> passed?"""

    def __init__(self):
        self.results: dict[tuple[str, str, str], bool] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.failed:
            path, _, name = report.nodeid.partition("::")
            function, _, param = name.partition("[")
            key = (path, function, param.rstrip("]"))
            self.results[key] = self.results.get(key, True) and report.passed


def sql_table(results) -> int:
    print(f"Hostile SQL: {len(HOSTILE)} statements (tests/hostile_sql.py). Held: refused or stopped in time "
          "(/ask: or cut to a plain read by the SQL post-processor; REST: returned as text, only EXPLAINed on the "
          "pasted schema's empty database), the database file and its folder unchanged.\n")
    print(f"{'surface':42s}{'tried':>7s}{'held':>9s}{'failed':>8s}")
    failures = 0
    for (path, function, prefix), surface in SQL_SURFACES.items():
        cases = [ok for (p, f, param), ok in results.items() if p == path and f == function and param.startswith(prefix)]
        failures += cases.count(False)
        print(f"{surface:42s}{len(cases):7d}{cases.count(True):9d}{cases.count(False):8d}")
    return failures


def file_table(results) -> int:
    refused_names = {name for name, (_, outcome, _) in CORPUS.items() if outcome == "refused"}
    print(f"\nHostile database files: {len(CORPUS)} ({len(refused_names)} to refuse, "
          f"{len(CORPUS) - len(refused_names)} to read safely; tests/hostile_files.py)\n")
    print(f"{'surface':42s}{'tried':>7s}{'refused':>9s}{'read':>6s}{'failed':>8s}")
    tally: dict[str, Counter] = {}
    for (path, function), surface in FILE_SURFACES.items():
        counts = tally.setdefault(surface, Counter())
        for (p, f, param), ok in results.items():
            if (p, f) == (path, function):
                counts["tried"] += 1
                counts["failed" if not ok else "refused" if param in refused_names else "read"] += 1
    for surface, counts in tally.items():
        print(f"{surface:42s}{counts['tried']:7d}{counts['refused']:9d}{counts['read']:6d}{counts['failed']:8d}")
    return sum(counts["failed"] for counts in tally.values())


def other_table(results) -> int:
    print(f"\n{'other checks':58s}{'tests':>7s}{'passed':>8s}")
    failures = 0
    for path, label in OTHER_CHECKS.items():
        cases = [ok for (p, _, _), ok in results.items() if p == path]
        failures += cases.count(False)
        print(f"{label:58s}{len(cases):7d}{cases.count(True):8d}")
    return failures


def main() -> int:
    outcomes = Outcomes()
    paths = sorted({key[0] for key in SQL_SURFACES} | {key[0] for key in FILE_SURFACES} | set(OTHER_CHECKS))
    status = pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", *paths], plugins=[outcomes])
    settings = get_settings()
    print(f"\n# text2sql security report (SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]})\n")
    failures = sql_table(outcomes.results) + file_table(outcomes.results) + other_table(outcomes.results)
    limits = {k: v for k, v in asdict(settings).items() if re.match(r"(max_|query_|queue|generation_|upload_|shutdown|introspection)", k)}
    print("\nLimits in effect: " + ", ".join(f"{k}={v}" for k, v in limits.items()))
    print(f"\n{'All checks passed.' if not failures and status == 0 else f'{failures} checks failed (pytest exit {status}).'}")
    return 0 if not failures and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
