"""The sandbox's hard backstop: queries run in worker processes that are killed when one C call
outlasts the time limit, that fail cleanly past their memory limit, and whose replies carry
plain values only. Also the result-size cap and the no-temporary-files pragma.

    python -m pytest tests/test_workers.py -v
"""

import io
import os
import pickle
import signal
import threading
import time

import pytest

from tests.hostile_sql import BIG_CTE, HUGE_ROW, LONG_C_CALLS
from text2sql.sandbox import QueryResult, Sandbox, Source
from text2sql.settings import get_settings
from text2sql.workers import WorkerOverran, _PlainUnpickler, _Worker, pool

TIME_LIMIT_S = 1.0


@pytest.fixture
def short_limits(monkeypatch):
    monkeypatch.setenv("TEXT2SQL_QUERY_TIMEOUT_S", str(TIME_LIMIT_S))
    monkeypatch.setenv("TEXT2SQL_QUERY_KILL_AFTER_S", "1")


@pytest.mark.parametrize("sql", LONG_C_CALLS)
def test_one_long_c_call_is_stopped_by_killing_its_worker(awkward_db, short_limits, sql):
    sandbox = Sandbox.from_file(awkward_db)
    started = time.monotonic()
    result = sandbox.run(sql)
    elapsed = time.monotonic() - started
    assert result.error == f"Stopped: the query ran longer than the {TIME_LIMIT_S:g} s limit."
    assert TIME_LIMIT_S + 1 <= elapsed < TIME_LIMIT_S + 3  # killed at timeout + kill-after, not minutes later
    assert sandbox.run("SELECT count(*) FROM person").rows == [(3,)]  # a fresh worker took its place


def test_without_workers_the_same_call_outlasts_the_time_limit(awkward_db, monkeypatch):
    """The reason the workers exist: in-process, the progress handler can't reach into instr()."""
    monkeypatch.setenv("TEXT2SQL_QUERY_WORKERS", "0")
    started = time.monotonic()
    result = Sandbox.from_file(awkward_db).run("SELECT instr(hex(zeroblob(200000)), hex(zeroblob(50000)) || '1')",
                                               timeout_s=0.2)
    assert result.rows == [(0,)] and result.error is None
    assert time.monotonic() - started > 0.4


def test_a_row_larger_than_the_memory_limit_fails_in_the_worker(awkward_db, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_QUERY_MEMORY_BYTES", str(256 * 2**20))
    result = Sandbox.from_file(awkward_db).run(HUGE_ROW)
    assert result.error == "Stopped: the query needed more than the 256 MB memory limit."
    assert Sandbox.from_file(awkward_db).run("SELECT 1").rows == [(1,)]


def test_results_are_capped_by_size_with_a_truncated_flag(awkward_db, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_MAX_RESULT_BYTES", "1000")
    result = Sandbox.from_file(awkward_db).run(BIG_CTE + "SELECT hex(zeroblob(50)) FROM n")
    assert result.error is None and result.truncated
    assert len(result.rows) == 10  # 10 values of 100 characters fit in 1000


def test_in_process_mode_keeps_every_other_layer(awkward_db, monkeypatch):
    monkeypatch.setenv("TEXT2SQL_QUERY_WORKERS", "0")
    sandbox = Sandbox.from_file(awkward_db)
    assert sandbox.run("DELETE FROM person").error.startswith("Refused")
    assert sandbox.run("SELECT count(*) FROM person").rows == [(3,)]
    assert sandbox.explain("SELECT nope FROM person") == "SQLite error: no such column: nope"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
def test_a_big_sort_opens_no_temporary_file(awkward_db, monkeypatch):
    """Without temp_store=MEMORY this sort spills into /var/tmp/etilqs_* files (checked in-process:
    this process's open files are visible)."""
    monkeypatch.setenv("TEXT2SQL_QUERY_WORKERS", "0")
    opened, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            for fd in os.listdir("/proc/self/fd"):
                try:
                    opened.add(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    sql = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200000) " \
          "SELECT count(*) FROM (SELECT hex(randomblob(50)) AS h FROM n ORDER BY h)"
    result = Sandbox.from_file(awkward_db).run(sql)
    done.set()
    watcher.join()
    assert result.rows == [(200000,)]
    assert not [path for path in opened if "etilqs" in path]


def test_a_worker_that_died_while_idle_is_replaced(awkward_db):
    sandbox = Sandbox.from_file(awkward_db)
    assert sandbox.run("SELECT 1").rows == [(1,)]
    for worker in list(pool()._idle):
        worker.process.kill()
        worker.process.wait()
    assert sandbox.run("SELECT 2").rows == [(2,)]


def test_a_worker_whose_parent_stops_listening_kills_itself(awkward_db, short_limits):
    """The child's own alarm ends it even if nobody kills it (the parent here waits 60 s)."""
    worker = _Worker()
    query = {"source": Source(uri=f"file:{awkward_db}?mode=ro"), "sql": LONG_C_CALLS[0], "explain": False,
             "max_rows": 10, "timeout_s": TIME_LIMIT_S, "settings": get_settings()}
    started = time.monotonic()
    with pytest.raises(WorkerOverran):  # its alarm: wait_s (2 s) + kill-after (1 s) + 1 s
        worker.call({"job": "execute", "kwargs": query, "wait_s": TIME_LIMIT_S + 1}, wait_s=60, max_reply_bytes=2**20)
    assert time.monotonic() - started < TIME_LIMIT_S + 1 + 1 + 1 + 2
    assert worker.process.returncode == -signal.SIGALRM
    worker.kill()


def test_worker_replies_may_hold_plain_values_only():
    plain = {"columns": ["a"], "rows": [(1, 2.5, "x", b"\x00", None)], "truncated": False, "elapsed_ms": 1.0,
             "error": None}
    assert _PlainUnpickler(io.BytesIO(pickle.dumps(plain))).load() == plain
    with pytest.raises(pickle.UnpicklingError, match="only plain values"):
        _PlainUnpickler(io.BytesIO(pickle.dumps(QueryResult(columns=[], rows=[])))).load()
