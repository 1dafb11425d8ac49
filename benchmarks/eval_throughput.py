"""Evaluation throughput: questions per minute at batch 1 vs batched generation with schema-prefix reuse.

Takes ``--questions`` Spider dev questions that have a database: by default the first ones in
dev.json order, as ``python -m evaluation.evaluate --limit N`` takes them; with ``--per-db K``
only K from each database in turn (more schema prefixes to compute: a harder case). Each
database's questions are answered twice with the same model: one at a time with plain
``generate`` (``reuse_prefix=False``: the whole ~600-token prompt computed per question),
then in batches of ``--batch-size`` that share the cached KV of the system prompt + schema,
as the evaluation does. Running the two back to back per database keeps them under the same
machine load. Prints a table, the speed-up, and every question whose raw output differs
between the two. Not a test: numbers depend on the machine and its load.

    nice -n 10 python -m benchmarks.eval_throughput [--questions 50] [--per-db K] [--batch-size 16] [--threads N] [--model NAME]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path


def pick_questions(total: int, per_db: int | None):
    from text2sql.spider import Spider

    spider = Spider()
    chosen = [e for e in spider.examples("dev") if spider.has_database(e.db_id)]
    if per_db:
        chosen = [e for _, group in itertools.groupby(chosen, key=lambda e: e.db_id) for e in list(group)[:per_db]]
    return spider, chosen[:total]


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--per-db", type=int, default=None, help="at most this many questions per database")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-spider", help="registry model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from text2sql.engine import load_generator
    from text2sql.pipeline import generate_sql_batch

    spider, examples = pick_questions(args.questions, args.per_db)
    generator = load_generator(args.model)
    import text2sql
    from text2sql import cpu

    print(f"text2sql from {Path(text2sql.__file__).parent}")
    print(
        f"model {generator.spec.name} ({generator.origin}), dtype {generator.base.dtype}, "
        f"{torch.get_num_threads()} threads, load average at start {os.getloadavg()[0]:.1f}"
    )
    print(cpu.summary())
    plain_seconds = batched_seconds = 0.0
    differences = []
    for db_id, group in itertools.groupby(examples, key=lambda e: e.db_id):
        group = list(group)
        schema = spider.schema(db_id)
        plain = []
        for example in group:
            result, seconds = timed(generate_sql_batch, generator, schema, [example.question], reuse_prefix=False)
            plain.append(result[0].raw)
            plain_seconds += seconds
        batched = []
        for start in range(0, len(group), args.batch_size):
            chunk = [e.question for e in group[start : start + args.batch_size]]
            result, seconds = timed(generate_sql_batch, generator, schema, chunk)
            batched.extend(g.raw for g in result)
            batched_seconds += seconds
        differences += [(e, a, b) for e, a, b in zip(group, plain, batched) if a != b]
        print(
            f"{db_id:28s} {len(group):3d} questions  plain {plain_seconds:7.1f} s  batched {batched_seconds:7.1f} s (running totals)"
        )

    n = len(examples)
    plain_rate, batched_rate = 60 * n / plain_seconds, 60 * n / batched_seconds
    print()
    print("| method | questions | seconds | questions/min |")
    print("|---|---:|---:|---:|")
    print(f"| batch 1, plain generate | {n} | {plain_seconds:.1f} | {plain_rate:.1f} |")
    print(f"| batch {args.batch_size} + schema-prefix KV reuse | {n} | {batched_seconds:.1f} | {batched_rate:.1f} |")
    print(
        f"\nspeed-up: {batched_rate / plain_rate:.2f}x   outputs that differ: {len(differences)} of {n}"
        f"   load average at end {os.getloadavg()[0]:.1f}"
    )
    for example, plain_raw, batched_raw in differences:
        print(
            f"\n#{example.id} {example.db_id}: {example.question}\n  plain:   {plain_raw!r}\n  batched: {batched_raw!r}"
        )


if __name__ == "__main__":
    main()
