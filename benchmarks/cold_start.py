"""The first answer after `python app.py` starts, and the server's memory, with the real
default model, for each engine (``TEXT2SQL_ENGINE``).

It starts the app as a subprocess (``benchmarks.serve``), times from the start until
``/health`` answers and until the first ``POST /generate_sql`` (a Spider schema, pasted)
returns, then asks a second question about the same schema, and reads the server's resident
memory (VmRSS, VmHWM) after both. Caches stay as they are (the GGUF join and the adapter's
GGUF conversion happen once per machine: run it twice for the warm-cache figure). Prints the
CPU's flags and the load average (the machine may be shared). Not a test.

    nice -n 10 python -m benchmarks.cold_start [--engines llama.cpp,transformers] [--threads 2] [--model qwen2.5-coder-1.5b]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import httpx

from benchmarks.serve import ServerProcess
from text2sql import cpu

SCHEMA_DB = "concert_singer"
QUESTIONS = ("How many singers do we have?", "What are the names of the stadiums without any concerts?")


def memory_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def measure(engine_name: str, threads: int, schema: str, model: str) -> dict:
    env = {"TEXT2SQL_ENGINE": engine_name, "TEXT2SQL_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "TEXT2SQL_DEFAULT_MODEL": model}
    started = time.monotonic()
    with ServerProcess(fake=False, env=env, start_timeout_s=600) as server:
        row = {"health": time.monotonic() - started}
        for key, question in zip(("first answer", "second question"), QUESTIONS):
            asked = time.monotonic()
            response = httpx.post(server.url + "generate_sql", json={"schema": schema, "question": question}, timeout=900)
            response.raise_for_status()
            row[key] = time.monotonic() - (started if key == "first answer" else asked)
            row[f"sql: {key}"] = response.json()["sql"]
        row.update(memory_mb(server.process.pid))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="llama.cpp,transformers")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp's and torch's threads")
    parser.add_argument("--model", default=os.environ.get("TEXT2SQL_DEFAULT_MODEL", ""),
                        help="the app's default model (TEXT2SQL_DEFAULT_MODEL; default: the registry's)")
    args = parser.parse_args()
    from text2sql.pipeline import Database
    from text2sql.spider import Spider

    schema = Database.from_file(Spider().db_path(SCHEMA_DB)).schema.to_ddl()
    print(f"{cpu.summary()}; {args.threads} threads; model {args.model or 'the registry default'}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    for engine_name in args.engines.split(","):
        row = measure(engine_name, args.threads, schema, args.model)
        print(f"{engine_name:14s} /health after {row['health']:.1f} s; first answer {row['first answer']:.1f} s after the "
              f"start; second question {row['second question']:.1f} s; RSS {row['VmRSS']:.0f} MB (peak {row['VmHWM']:.0f} MB)")
        print(f"{'':14s} {row['sql: first answer']!r}  {row['sql: second question']!r}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
