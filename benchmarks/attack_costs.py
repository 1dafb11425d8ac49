"""What each defence is worth: the same attack with the defence switched off by its setting,
and with the defaults. Each attack runs in a fresh Python process, so its time and peak memory
are its own (big_body's: the server's, in its outcome). The figures quoted in SECURITY.md and
in the code's comments come from here.

    python -m benchmarks.attack_costs             # about 2 minutes; nice it on a shared machine
    python -m benchmarks.attack_costs --only long_c_call

Attacks (the defence they meet):
  long_c_call      instr() over multi-megabyte strings, 1 s time limit (query worker killed)
  many_big_rows    40 rows of 9 MB blobs (result size cap)
  huge_row         one row of 100 blobs of 9 MB (query worker's memory limit)
  crafted_check    quick_check of a file whose generated column is slow (checked in a worker)
  big_schema       parsing a 199,000-character pasted schema (REST parses it inside the queue)
  big_body         a 300 MB JSON body to REST /generate_sql (413 before parsing)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WITHOUT = {  # the setting that switches each defence off
    "long_c_call": {"TEXT2SQL_QUERY_WORKERS": "0"},
    "many_big_rows": {"TEXT2SQL_QUERY_WORKERS": "0", "TEXT2SQL_MAX_RESULT_BYTES": str(10**12)},
    "huge_row": {"TEXT2SQL_QUERY_WORKERS": "0"},
    "crafted_check": {"TEXT2SQL_QUERY_WORKERS": "0"},
    "big_schema": None,  # the cost only: what REST now parses inside its queue
    "big_body": {"TEXT2SQL_MAX_REQUEST_BYTES": str(10**12)},
}
INSTR = "SELECT instr(hex(zeroblob(1000000)), hex(zeroblob(250000)) || '1')"
ROWS = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 40) SELECT zeroblob(9000000) FROM n"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def a_database() -> Path:
    from tests.conftest import AWKWARD_SQL, build_db

    return build_db(Path(tempfile.mkdtemp()) / "a.sqlite", AWKWARD_SQL)


def run_sql(sql: str, timeout_s: float = 5.0) -> str:
    from text2sql.sandbox import Sandbox

    result = Sandbox.from_file(a_database()).run(sql, timeout_s=timeout_s)
    return result.error or f"{len(result.rows)} rows, truncated={result.truncated}"


def crafted_check() -> str:
    from tests.hostile_files import build
    from text2sql.errors import DatabaseFileError
    from text2sql.sandbox import check_database_file

    try:
        check_database_file(build("slow_generated_column.sqlite", Path(tempfile.mkdtemp())))
    except DatabaseFileError as error:
        return f"refused: {error}"
    return "accepted"


def big_schema() -> str:
    from text2sql.schema import parse_schema_text

    ddl = "".join(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, a{i} TEXT, b INTEGER REFERENCES t{max(i - 1, 0)}(id), "
                  f"c REAL, d TEXT);\n" for i in range(2000))[:199_000]
    schema, _ = parse_schema_text(ddl.rsplit("\n", 2)[0])
    return f"{len(ddl):,} characters parsed, {len(schema.tables)} tables"


def big_body() -> str:
    """The server's own peak memory (VmHWM) before and after one 300 MB body."""
    import httpx

    from benchmarks.serve import ServerProcess

    with ServerProcess(fake=True) as server:  # it inherits this process's TEXT2SQL_* settings
        status = Path(f"/proc/{server.process.pid}/status")
        hwm = lambda: int(status.read_text().split("VmHWM:")[1].split()[0]) // 1024  # noqa: E731
        before = hwm()
        body = b'{"schema": "Table: t\\nColumns: a", "question": "' + b"x" * 300_000_000 + b'"}'
        response = httpx.post(server.url + "generate_sql", content=body, timeout=300,
                              headers={"content-type": "application/json"})
        return f"HTTP {response.status_code}; server peak memory {before} MB -> {hwm()} MB"


ATTACKS = {
    "long_c_call": lambda: run_sql(INSTR, timeout_s=1.0),
    "many_big_rows": lambda: run_sql(ROWS),
    "huge_row": lambda: run_sql("SELECT " + ", ".join(["zeroblob(9000000)"] * 100)),
    "crafted_check": crafted_check,
    "big_schema": big_schema,
    "big_body": big_body,
}


def measure(name: str) -> None:
    """In this (fresh) process: run one attack, print {"seconds", "peak_mb", "baseline_mb", "outcome"}."""
    import text2sql.sandbox  # noqa: F401  (imports are not the attack's cost)
    import text2sql.schema  # noqa: F401

    baseline = peak_mb()
    started = time.monotonic()
    outcome = ATTACKS[name]()
    print(json.dumps({"seconds": time.monotonic() - started, "peak_mb": peak_mb(), "baseline_mb": baseline,
                      "outcome": outcome}))


def in_fresh_process(name: str, env: dict) -> dict:
    run = subprocess.run([sys.executable, "-m", "benchmarks.attack_costs", "--measure", name],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    if run.returncode:
        return {"seconds": 0, "peak_mb": 0, "baseline_mb": 0, "outcome": "crashed: " + run.stderr[-300:]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(ATTACKS))
    parser.add_argument("--measure", choices=sorted(ATTACKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure)
    print(f"{'attack':15s}{'defence':9s}{'seconds':>9s}{'process peak MB':>17s}  outcome")
    for name in [args.only] if args.only else ATTACKS:
        runs = [("cost", {})] if WITHOUT[name] is None else [("off", WITHOUT[name]), ("on", {})]
        for label, env in runs:
            result = in_fresh_process(name, env)
            # big_body's attacked process is the server: its figure is in the outcome
            growth = "-" if name == "big_body" else f"+{result['peak_mb'] - result['baseline_mb']:.0f}"
            print(f"{name:15s}{label:9s}{result['seconds']:9.2f}{growth:>17s}  {result['outcome'][:110]}")


if __name__ == "__main__":
    main()
