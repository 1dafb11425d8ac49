"""What one llama.cpp decode step costs as it carries more tokens, and how many tokens an
answer writes: the floor under the greedy and best-of-k latencies.

For each model it puts a real prompt (a Spider dev database's schema and a question, as the
app builds it) into the KV cache, then times one step carrying n new tokens (the median of
``--repeats``), in two shapes: n rows of one token each, the prompt's cells shared (a
best-of-n step, as ``LlamaCppGenerator`` decodes it), and one row of n tokens with logits at
each (a speculative step: a token plus n - 1 drafted ones to verify). n = 1 is a greedy step;
ratios are against it, in the same run.
With ``--predictions``, it also counts the tokens of a committed run's predicted SQL (the
model's own tokenizer), so ``tokens x ms a step`` bounds the next question's latency from
below. Prints the CPU kind and the load average (pause other work for a clean figure).
Not a test.

    nice -n 10 python -m benchmarks.decode_cost --threads 2 --model qwen2.5-coder-1.5b,qwen2.5-coder-0.5b-spider \\
        --predictions results/qwen2.5-coder-1.5b-base/predictions.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from text2sql import cpu

PREFIX_DB = "concert_singer"
TOKEN_COUNTS = (1, 2, 4, 8, 12, 16, 32)


def prefix_tokens(generator) -> list[int]:
    from text2sql.pipeline import Database
    from text2sql.prompt import build_messages
    from text2sql.spider import Spider

    schema = Database.from_file(Spider().db_path(PREFIX_DB)).schema
    return generator.token_ids(build_messages(schema, "How many singers do we have?"))


def step_ms(context, start: int, n: int, repeats: int, rows: bool) -> float:
    """Median milliseconds of one step of ``n`` new tokens after the ``start`` prompt tokens of
    sequence 0: as ``n`` rows (sequences 1..n, copies of 0) or as one row (then forgotten)."""
    token = context.model.n_vocab // 2
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        if rows:
            for seq in range(1, n + 1):
                context.copy_seq(0, seq)
            context.feed([(seq, [token], start) for seq in range(1, n + 1)])
        else:
            context.feed([(0, [token] * n, start)], every_token=True)
        times.append(1000 * (time.perf_counter() - began))
        for seq in range(1, n + 1):
            context.remove_seq(seq)
        context.remove_seq(0, start)
    return statistics.median(times)


def answer_tokens(generator, predictions: Path) -> list[int]:
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    return sorted(len(generator.model.tokenize(row["raw"])) + 1 for row in rows)  # + the end token


def measure(model: str, repeats: int, predictions: Path | None) -> None:
    from text2sql.engine import load_generator

    generator = load_generator(model)
    context = generator.context
    prefix = prefix_tokens(generator)
    context.clear()
    context.feed([(0, prefix, 0)], logits=False)
    print(f"\n{model}: {generator.engine}; prefix {len(prefix)} tokens ({PREFIX_DB})")
    print(f"{'new tokens':>10s} | {'n rows: ms':>10s} {'x 1 token':>9s} | {'1 row of n: ms':>14s} {'x 1 token':>9s}")
    single = None
    for n in TOKEN_COUNTS:
        as_rows, as_one_row = (step_ms(context, len(prefix), n, repeats, rows) for rows in (True, False))
        single = single or as_rows
        print(f"{n:10d} | {as_rows:10.1f} {as_rows / single:9.2f} | {as_one_row:14.1f} {as_one_row / single:9.2f}")
    if predictions:
        counts = answer_tokens(generator, predictions)
        p50, p95 = counts[len(counts) // 2], counts[int(0.95 * (len(counts) - 1))]
        print(f"answers in {predictions}: {len(counts)}, tokens p50 {p50} / p95 {p95}; "
              f"decoding them greedily costs at least {p50 * single / 1000:.2f} s / {p95 * single / 1000:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b,qwen2.5-coder-0.5b-spider", help="comma-separated registry names (llama.cpp)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--predictions", type=Path, help="a run's predictions.jsonl, for the answers' token counts")
    args = parser.parse_args()
    os.environ.update(TEXT2SQL_THREADS=str(args.threads), TEXT2SQL_ENGINE="llama.cpp")
    print(f"{cpu.summary()}; {args.threads} threads; load average at start {os.getloadavg()[0]:.1f}")
    for model in args.model.split(","):
        measure(model, args.repeats, args.predictions)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
