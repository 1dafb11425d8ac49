"""A bounded load test of the served app: concurrent clients mix REST ``POST /generate_sql`` and
``/run_sql`` on uploaded databases, then every request is accounted for.

    python -m benchmarks.load_test                                  # 50 clients, 60 s, fake model
    python -m benchmarks.load_test --real --clients 4 --duration 60 --rest-share 1   # embedded model
    TEXT2SQL_QUEUE_SIZE=8 python -m benchmarks.load_test --duration 20   # a small queue: 503s

The server is `python -m benchmarks.serve` in a subprocess on a free 127.0.0.1 port (loopback
only), with an empty TMPDIR and GRADIO_TEMP_DIR of its own; TEXT2SQL_* variables set here reach
it. ``/run_sql`` is called as gradio_client calls it: upload the file (``/gradio_api/upload``),
``POST /gradio_api/call/run_sql``, read the event stream. Each answer is checked (the right count
from the right database). New requests stop after ``--duration`` seconds; requests in flight then
get ``--timeout`` seconds to finish, and the server is stopped with SIGTERM.

Every request ends as one of: ok; refused (HTTP 429/503 with a message); error (any other
answer, or a wrong one); lost (no answer within the timeout, or the connection failed). The
test passes (exit 0) only with no error, nothing lost and no file left behind. Latency is the
client's: for /run_sql the upload, the call and the stream together. Peak memory is sampled
(psutil, every 0.2 s) over the server and its query workers; the load generator shares the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psutil

from benchmarks.latency import percentile
from benchmarks.serve import ServerProcess
from examples.build import build_all

SCHEMA = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, city TEXT);"
QUESTIONS = ["How many users are older than 30?", "List the names of users in Paris.",
             "What is the average age of the users?", "Which city has the most users?"]
# Each example database with a query whose answer only that database gives.
QUERIES = {"shop": "SELECT count(*) FROM customers", "school": "SELECT count(*) FROM students",
           "flights": "SELECT count(*) FROM flights"}


class Tally:
    """Every request's kind, outcome, latency and (for REST) the server's generation time."""

    def __init__(self):
        self.records: list[tuple[str, str, float, float | None, str]] = []

    def add(self, kind: str, outcome: str, latency_s: float, generation_ms: float | None = None, note: str = ""):
        self.records.append((kind, outcome, latency_s, generation_ms, note))


async def rest_generate(client: httpx.AsyncClient, tally: Tally, rng: random.Random, timeout_s: float) -> None:
    started = time.monotonic()
    try:
        response = await client.post("generate_sql", json={"schema": SCHEMA, "question": rng.choice(QUESTIONS)},
                                     timeout=timeout_s)
    except httpx.HTTPError as error:
        return tally.add("REST /generate_sql", "lost", time.monotonic() - started, note=repr(error))
    latency = time.monotonic() - started
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code == 200 and body.get("sql") is not None:
        tally.add("REST /generate_sql", "ok", latency, body["execution_time_ms"])
    elif response.status_code in (429, 503) and body.get("error"):
        tally.add("REST /generate_sql", "refused", latency, note=body["error"])
    else:
        tally.add("REST /generate_sql", "error", latency, note=f"{response.status_code} {response.text[:200]}")


def last_event(stream: str) -> tuple[str, str]:
    """(event, data) of the last non-heartbeat event in a Gradio event stream."""
    events = [block for block in stream.strip().split("\n\n") if block and "event: heartbeat" not in block]
    if not events:
        return "", ""
    lines = dict(line.split(": ", 1) for line in events[-1].splitlines() if ": " in line)
    return lines.get("event", ""), lines.get("data", "")


async def upload_and_run_sql(client: httpx.AsyncClient, tally: Tally, rng: random.Random, databases: dict,
                             timeout_s: float) -> None:
    name = rng.choice(sorted(databases))
    path, expected = databases[name]
    started = time.monotonic()
    try:
        upload = await client.post("gradio_api/upload", files={"files": (path.name, path.read_bytes())},
                                   timeout=timeout_s)
        if upload.status_code != 200:
            return tally.add("/run_sql (upload + run)", "error", time.monotonic() - started, note=upload.text[:200])
        file = {"path": upload.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        call = await client.post("gradio_api/call/run_sql", json={"data": ["", QUERIES[name], file]}, timeout=timeout_s)
        if call.status_code in (429, 503):
            return tally.add("/run_sql (upload + run)", "refused", time.monotonic() - started, note=call.text[:200])
        event_id = call.json()["event_id"]
        stream = await client.get(f"gradio_api/call/run_sql/{event_id}", timeout=timeout_s)
    except httpx.HTTPError as error:
        return tally.add("/run_sql (upload + run)", "lost", time.monotonic() - started, note=repr(error))
    latency = time.monotonic() - started
    event, data = last_event(stream.text)
    if event == "complete" and json.loads(data)[0]["rows"] == expected:
        tally.add("/run_sql (upload + run)", "ok", latency)
    else:
        tally.add("/run_sql (upload + run)", "error", latency, note=f"{event}: {data[:200]}")


async def client_loop(index: int, url: str, tally: Tally, databases: dict, stop_at: float, rest_share: float,
                      timeout_s: float) -> None:
    rng = random.Random(index)
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < stop_at:
            if rng.random() < rest_share:
                await rest_generate(client, tally, rng, timeout_s)
            else:
                await upload_and_run_sql(client, tally, rng, databases, timeout_s)


class MemorySampler(threading.Thread):
    """Peak resident memory of the server process and of the server plus its children."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_server = self.peak_total = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            try:
                server = self.process.memory_info().rss
                children = sum(child.memory_info().rss for child in self.process.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_server = max(self.peak_server, server)
            self.peak_total = max(self.peak_total, server + children)


def example_databases(folder: Path) -> dict:
    """name -> (path, the rows its query returns), read here with sqlite3."""
    databases = {}
    for name, path in build_all(folder).items():
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            databases[name] = (path, [list(row) for row in conn.execute(QUERIES[name])])
    return databases


def report(tally: Tally, elapsed_s: float) -> bool:
    """Print the table; True when nothing failed or was lost."""
    by_kind = defaultdict(list)
    for record in tally.records:
        by_kind[record[0]].append(record)
    print(f"\n{'':26s}{'sent':>7s}{'ok':>7s}{'refused':>9s}{'errors':>8s}{'lost':>6s}"
          f"{'p50 s':>8s}{'p99 s':>8s}{'max s':>8s}{'req/s':>8s}")
    for kind, records in sorted(by_kind.items()):
        count = lambda outcome: sum(r[1] == outcome for r in records)  # noqa: E731
        latencies = [r[2] for r in records if r[1] == "ok"] or [0.0]
        print(f"{kind:26s}{len(records):7d}{count('ok'):7d}{count('refused'):9d}{count('error'):8d}{count('lost'):6d}"
              f"{percentile(latencies, .5):8.3f}{percentile(latencies, .99):8.3f}{max(latencies):8.3f}"
              f"{len(records) / elapsed_s:8.1f}")
    generated = [(r[2], r[3] / 1000) for r in tally.records if r[3] is not None]
    if generated:
        waits = [latency - generation for latency, generation in generated]
        print(f"\nREST generation time (server) mean {statistics.mean(g for _, g in generated):.3f} s; "
              f"client time beyond generation (queue + HTTP) p50 {percentile(waits, .5):.3f} s, max {max(waits):.3f} s")
    problems = [r for r in tally.records if r[1] in ("error", "lost")]
    refusals = sorted({r[4] for r in tally.records if r[1] == "refused"})
    for note in refusals[:3]:
        print(f"refused with: {note}")
    for record in problems[:10]:
        print(f"{record[1]}: {record[0]}: {record[4]}")
    return not problems


async def run_clients(url: str, databases: dict, args) -> tuple[Tally, float]:
    tally = Tally()
    started = time.monotonic()
    stop_at = started + args.duration
    await asyncio.gather(*(client_loop(i, url, tally, databases, stop_at, args.rest_share, args.timeout)
                           for i in range(args.clients)))
    return tally, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60, help="seconds during which new requests start")
    parser.add_argument("--rest-share", type=float, default=0.5, help="share of requests that are REST /generate_sql")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a request may take before it is lost")
    parser.add_argument("--real", action="store_true", help="serve the registry's default model, not the fake")
    args = parser.parse_args()

    databases = example_databases(Path(tempfile.mkdtemp(prefix="text2sql-load-dbs-")))
    with ServerProcess(fake=not args.real, start_timeout_s=600) as server:
        print(f"server {server.url} (pid {server.process.pid}), model: {'real default' if args.real else 'fake'}; "
              f"{args.clients} clients for {args.duration:g} s, {args.rest_share:.0%} REST")
        warm = httpx.post(server.url + "generate_sql", json={"schema": SCHEMA, "question": QUESTIONS[0]}, timeout=600)
        print(f"warm-up request: {warm.status_code} {warm.text[:120]}")
        sampler = MemorySampler(server.process.pid)
        sampler.start()
        tally, elapsed = asyncio.run(run_clients(server.url, databases, args))
        sampler.done.set()
        healthy = httpx.get(server.url + "health", timeout=10).status_code == 200
        peak_hwm = int(Path(f"/proc/{server.process.pid}/status").read_text().split("VmHWM:")[1].split()[0]) // 1024
        server.stop()
    clean = report(tally, elapsed)
    print(f"\nelapsed {elapsed:.1f} s (new requests for {args.duration:g} s, then in-flight ones finished)")
    print(f"peak memory during the run: server {sampler.peak_server / 2**20:.0f} MB (since its start, VmHWM: {peak_hwm} MB), "
          f"server + query workers {sampler.peak_total / 2**20:.0f} MB")
    print(f"server healthy after the run: {healthy}; stopped by SIGTERM with exit code {server.exit_code}; "
          f"files left in its TMPDIR and GRADIO_TEMP_DIR: {len(server.leftovers)}")
    return 0 if clean and healthy and not server.leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
