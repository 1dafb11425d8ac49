"""The hard backstop behind the sandbox: untrusted SQL runs in worker processes that can be killed.

SQLite's progress handler (the sandbox's time limit) runs between VM instructions only, so one
long C call outlives it: ``instr()`` on multi-megabyte strings ran for half a minute under a
1 s limit. And one query can build rows far larger than memory: one row of 100 blobs of 9 MB
took 1.7 GB in a few seconds (``python -m benchmarks.attack_costs``). So ``Sandbox.run``,
``Sandbox.explain`` and the uploads' ``quick_check`` hand their work to a pool of child
processes (``python -m text2sql.workers``, at most ``query_workers`` at once):

* a child's address space is capped at ``query_memory_bytes`` (RLIMIT_AS), so a memory bomb
  fails inside the child with "out of memory" instead of taking the server down;
* a child still busy ``query_kill_after_s`` past the query's time limit is killed (SIGKILL) and
  replaced; an alarm in the child kills it too, should this process die first;
* the child runs attacker-chosen SQL, so its replies are unpickled with no classes allowed
  (tuples, lists, dicts, strings, bytes, numbers only) and at most ``2 * max_result_bytes`` long.

    from text2sql.workers import run_in_worker
    result = run_in_worker({"source": ..., "sql": "SELECT 1", "explain": False, "max_rows": 10,
                            "timeout_s": 5.0, "settings": get_settings()})
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import io
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from text2sql.sandbox import QueryResult, execute, integrity_check
from text2sql.settings import get_settings


READY = b"ready"
START_TIMEOUT_S = 60.0
"""A child that hasn't started in this long (a loaded machine) is given up on."""
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class WorkerFailed(Exception):
    """A worker died without answering (the message says how)."""


class WorkerOverran(WorkerFailed):
    """A worker was still busy when its time was up."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a query worker sent a {module}.{name}; only plain values are accepted")


class _Worker:
    """One child process and the socket to it; it runs one query at a time."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        # The child must import this very copy of the package, wherever the caller runs from.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "text2sql.workers", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env,
            )
        self.connection = Connection(ours.detach())
        try:
            if not self.connection.poll(START_TIMEOUT_S) or self.connection.recv_bytes() != READY:
                raise WorkerFailed("did not start")
        except (EOFError, OSError):
            self.kill()
            raise WorkerFailed("did not start") from None

    def call(self, request: dict, wait_s: float, max_reply_bytes: int) -> dict:
        try:
            self.connection.send_bytes(pickle.dumps(request))
            if not self.connection.poll(wait_s):
                raise WorkerOverran()
            reply = self.connection.recv_bytes(max_reply_bytes)
        except (EOFError, OSError) as error:
            try:
                code = self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                raise WorkerFailed("stopped answering") from error
            if code == -signal.SIGALRM:  # its own last-resort alarm
                raise WorkerOverran() from error
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            raise WorkerFailed(f"died ({how})") from error
        return _PlainUnpickler(io.BytesIO(reply)).load()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.connection.close()


class WorkerPool:
    """At most ``size`` workers, started on demand and kept for the next query."""

    def __init__(self, size: int):
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def call(self, request: dict, wait_s: float, max_reply_bytes: int) -> dict:
        with self._slots:
            worker = self._take_idle() or _Worker()
            try:
                reply = worker.call(request, wait_s, max_reply_bytes)
            except BaseException:  # overran, died, or this thread was interrupted: never reuse it
                worker.kill()
                raise
            with self._lock:
                self._idle.append(worker)
            return reply

    def _take_idle(self) -> _Worker | None:
        """A live idle worker (one that died while idle, e.g. OOM-killed, is dropped)."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                worker.connection.close()
        return None

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.kill()


@functools.cache
def pool() -> WorkerPool:
    """This process's pool, sized by ``query_workers`` when first used."""
    workers = WorkerPool(max(1, get_settings().query_workers))
    atexit.register(workers.close)
    return workers


def run_in_worker(request: dict) -> QueryResult:
    """``text2sql.sandbox.execute(**request)`` in a worker; an overrun or a crash is a result
    with the error set, like any other stopped query."""
    settings = request["settings"]
    wait_s = request["timeout_s"] + settings.query_kill_after_s
    try:
        reply = call("execute", request, wait_s, max_reply_bytes=2 * settings.max_result_bytes + 2**20)
    except WorkerOverran:
        error = f"Stopped: the query ran longer than the {request['timeout_s']:g} s limit."
        return QueryResult(columns=[], rows=[], elapsed_ms=wait_s * 1000, error=error)
    except WorkerFailed as failure:
        return QueryResult(columns=[], rows=[], error=f"Stopped: the query's worker process {failure}.")
    return QueryResult(**reply)


def call(job: str, kwargs: dict, wait_s: float, max_reply_bytes: int = 2**20) -> dict:
    """Run one of ``JOBS`` in a worker, killing it after ``wait_s``; raises ``WorkerOverran`` or
    ``WorkerFailed`` when no answer comes."""
    return pool().call({"job": job, "kwargs": kwargs, "wait_s": wait_s}, wait_s, max_reply_bytes)


# ---------------------------------------------------------------------------
# The child: python -m text2sql.workers FD

JOBS = {"execute": lambda **kwargs: dataclasses.asdict(execute(**kwargs)), "integrity_check": integrity_check}
"""What a worker may be asked to run; each returns a dict of plain values."""


def _answer(request: dict) -> bytes:
    settings = request["kwargs"]["settings"]
    # Only the soft limit: each request may carry its own (tests lower it). macOS refuses RLIMIT_AS.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (settings.query_memory_bytes, resource.RLIM_INFINITY))
    # SIGALRM's default action ends the process: the last resort if the parent is gone.
    signal.setitimer(signal.ITIMER_REAL, request["wait_s"] + settings.query_kill_after_s + 1)
    try:
        return pickle.dumps(JOBS[request["job"]](**request["kwargs"]))
    except MemoryError:
        limit = f"{settings.query_memory_bytes // 2**20:,} MB"
        error = f"Stopped: the result needed more than the {limit} memory limit."
        return pickle.dumps({"columns": [], "rows": [], "error": error})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(fd: int) -> None:
    connection = Connection(fd)
    connection.send_bytes(READY)
    while True:
        try:
            request = pickle.loads(connection.recv_bytes())
        except EOFError:  # the parent closed the socket or exited
            return
        connection.send_bytes(_answer(request))


if __name__ == "__main__":
    main(int(sys.argv[1]))
