"""Latency of one question in auto mode against greedy, as the app answers it (one at a time).

For N Spider dev questions, two from each dev database in turn (19 have a SQLite file here,
so at most 38), each question is asked twice with ``--model`` (the fine-tuned 0.5B unless
told), greedy and auto (in alternating order), each time after the database's schema prefix
was computed untimed (``pipeline.warm_up``, as the app does when a database is chosen, while
the visitor types), so neither pays a prefill the other was spared; through ``text2sql.pipeline.ask`` as the app's
Ask tab does: generation, checks, escalation, vote, repair and the run. Prints p50/p95 of
both, their ratio, and how many questions escalated. Not a test: the numbers depend on the
machine and its load, which is printed with the CPU flags and the engine (llama.cpp by default
where it is installed).

    nice -n 10 python -m benchmarks.auto_latency --questions 38 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.latency import percentile, pick_questions
from text2sql import cpu


def timed_ask(database, question: str, model, decoding):
    from text2sql.pipeline import ask

    started = time.perf_counter()
    answer = ask(database, question, model=model, decoding=decoding)
    return time.perf_counter() - started, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=38)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-spider", help="registry model (default: the documented run's)")
    parser.add_argument("--k", type=int, default=None, help="auto's k (default: the setting auto_k)")
    args = parser.parse_args()

    os.environ["TEXT2SQL_THREADS"] = str(args.threads)  # llama.cpp's threads, read when it loads
    import torch

    from text2sql.engine import load_generator
    from text2sql.pipeline import Database, warm_up
    from text2sql.selection import Decoding

    torch.set_num_threads(args.threads)
    spider, pairs = pick_questions(args.questions)  # (first, second) question pairs, one pair a database
    examples = [example for pair in pairs for example in pair][: args.questions]
    generator = load_generator(args.model)
    auto = Decoding.auto(args.k)
    print(f"model {generator.spec.name}, {generator.engine}, {args.threads} threads, {cpu.summary()}, "
          f"load average at start {os.getloadavg()[0]:.1f}; {auto.describe()}")
    timed_ask(Database.from_file(spider.db_path(examples[0].db_id)), examples[0].question, args.model, Decoding())
    greedy_times, auto_times, escalated = [], [], 0  # the untimed ask above took the first call's one-off costs
    for i, example in enumerate(examples):
        database = Database.from_file(spider.db_path(example.db_id))
        runs = [(Decoding(), greedy_times), (auto, auto_times)]
        for decoding, times in runs if i % 2 == 0 else runs[::-1]:
            warm_up(database, args.model)
            seconds, answer = timed_ask(database, example.question, args.model, decoding)
            times.append(seconds)
            escalated += answer.generation.escalation is not None
        print(f"{example.id:4d} {example.db_id:28s} greedy {greedy_times[-1]:6.2f} s  auto {auto_times[-1]:6.2f} s")
    print()
    print(f"{'':10s}{'p50 (s)':>10s}{'p95 (s)':>10s}{'mean (s)':>10s}")
    for label, values in (("greedy", greedy_times), ("auto", auto_times)):
        print(f"{label:10s}{percentile(values, .5):10.2f}{percentile(values, .95):10.2f}{statistics.mean(values):10.2f}")
    print(f"auto / greedy: p50 {percentile(auto_times, .5) / percentile(greedy_times, .5):.2f}x, "
          f"p95 {percentile(auto_times, .95) / percentile(greedy_times, .95):.2f}x, "
          f"mean {statistics.mean(auto_times) / statistics.mean(greedy_times):.2f}x; "
          f"escalated {escalated} of {len(examples)}; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
