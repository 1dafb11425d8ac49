"""Questions per second through an OpenAI-compatible server with N requests in flight
(``evaluation.evaluate --concurrency N``), against the same questions answered in process.

Starts llama-cpp-python's server (``text2sql.llama_server``) for a registry entry on a free
loopback port. Each round answers the first ``--questions`` Spider dev questions that have a
database, greedily, with evaluate's own ``generate_predictions``: through a ``backend: openai``
entry pointing at the server with batches of one question, N at once, for each N of
``--concurrency``; then in process on the llama.cpp backend in batches of ``--batch-size``, as
evaluate runs by default (the baseline). Rounds alternate the order of the runs, and the table
gives each run's median over the rounds: on a shared machine other jobs take the CPU in bursts.
Besides wall-clock questions/s it gives the CPU seconds spent per question (the server
process's, or this process's for the in-process run), which other jobs don't change much.
Before the rounds each side answers the first question once, untimed (the first calls after a
start cost far more; and so every run starts with the schema's prefix cached, as each ends).
One llama.cpp thread by default: its threads wait for each other by spinning, and with other
jobs on this machine's two cores a two-thread server once spent 83 CPU seconds on a question
(SmolLM2) that one thread answers in 2.5. Prints the CPU kind and the load average before and
after; ``--out`` writes everything as JSON. Not a test: the numbers depend on the machine and
its load.

    nice -n 10 python -m benchmarks.endpoint_throughput [--model qwen2.5-coder-0.5b-spider] [--questions 16] \\
        [--concurrency 1,2,4,8] [--rounds 2] [--threads 1] [--out benchmarks/results/endpoint_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

LLAMA_CPP_SAMPLING = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
IN_PROCESS = "in process"


def served_registry(spec, base_url: str):
    """A registry with one ``backend: openai`` entry, ``served``, asking the server for ``spec``."""
    from text2sql.registry import Registry

    entry = {"backend": "openai", "base": vars(spec.base), "generation": spec.generation,
             "endpoint": {"base_url": base_url, "model": spec.name, "extra_body": LLAMA_CPP_SAMPLING,
                          "timeout_s": 600, "logprobs": False}}  # queued requests wait for those before them
    if spec.adapter:
        entry["adapter"] = vars(spec.adapter)
    return Registry.from_dict({"models": {"served": entry}}, registry_dir=spec.registry_dir)


def server_pid() -> int:
    """The server ``running`` started: this process's only child."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one child process (the server), found {children}")
    return int(children[0])


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used, or this one's when None."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_run(model: str, registry, spider, questions: int, batch_size: int, concurrency: int,
              pid: int | None = None) -> dict:
    from evaluation.evaluate import generate_predictions

    load_before, cpu_before = os.getloadavg()[0], cpu_seconds(pid)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        path = generate_predictions(model, spider, "dev", Path(out), questions, batch_size, registry=registry,
                                    concurrency=concurrency)
        seconds = time.perf_counter() - started
        predictions = [json.loads(line) for line in path.read_text().splitlines()]
    return {"seconds": round(seconds, 1), "questions_per_s": round(len(predictions) / seconds, 3),
            "cpu_s_per_question": round((cpu_seconds(pid) - cpu_before) / len(predictions), 2),
            "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1),
            "engine": predictions[0]["engine"], "sql": [p["prediction"] for p in predictions]}


def table(runs: dict[str, list[dict]]) -> str:
    median = {name: {key: statistics.median(r[key] for r in rounds) for key in ("questions_per_s", "cpu_s_per_question")}
              for name, rounds in runs.items()}
    first = next(iter(runs))
    lines = ["| run | questions/s (median) | vs 1 in flight | vs in process | CPU s / question | "
             "answers as 1 in flight | load avg before / after, each round |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, rounds in runs.items():
        same = sum(a == b for a, b in zip(rounds[0]["sql"], runs[first][0]["sql"]))
        loads = ", ".join(f"{r['load_before']} / {r['load_after']}" for r in rounds)
        lines.append(f"| {name} | {median[name]['questions_per_s']:.3f} | "
                     f"{median[name]['questions_per_s'] / median[first]['questions_per_s']:.2f}x | "
                     f"{median[name]['questions_per_s'] / median[IN_PROCESS]['questions_per_s']:.2f}x | "
                     f"{median[name]['cpu_s_per_question']:.2f} | {same}/{len(rounds[0]['sql'])} | {loads} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-spider", help="packaged registry entry to serve")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="the in-process baseline's batches")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, server and in-process (0: every core)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from text2sql import cpu
    from text2sql.llama_server import running
    from text2sql.registry import default_registry
    from text2sql.spider import Spider

    threads = args.threads or len(os.sched_getaffinity(0))
    os.environ.update(TEXT2SQL_THREADS=str(threads), TEXT2SQL_ENGINE="llama.cpp")
    spec, spider = default_registry().get(args.model), Spider()
    print(f"{args.model}, first {args.questions} dev questions, greedy; {threads} llama.cpp threads, "
          f"{args.rounds} rounds; {cpu.summary()}", flush=True)
    served = [f"server, {n} in flight" for n in args.concurrency.split(",")]
    runs: dict[str, list[dict]] = {name: [] for name in served + [IN_PROCESS]}
    with running(args.model, threads=threads) as base_url:
        registry, pid = served_registry(spec, base_url), server_pid()
        timed_run("served", registry, spider, 1, 1, 1)  # warm-ups
        timed_run(args.model, None, spider, 1, args.batch_size, 1)
        for round_number in range(args.rounds):
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                if name == IN_PROCESS:
                    run = timed_run(args.model, None, spider, args.questions, args.batch_size, 1)
                else:
                    run = timed_run("served", registry, spider, args.questions, 1, int(name.split()[1]), pid=pid)
                runs[name].append(run)
                print(f"  round {round_number + 1}, {name}: {run['questions_per_s']} q/s, "
                      f"{run['cpu_s_per_question']} CPU s a question", flush=True)
    runs = {name: runs[name] for name in served + [IN_PROCESS]}
    print()
    print(table(runs))
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "questions": args.questions, "cpu": cpu.kind(),
                                        "cores": os.cpu_count(), "threads": threads, "rounds": args.rounds,
                                        "runs": runs, "table": table(runs)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
