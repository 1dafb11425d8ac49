"""What llama.cpp's micro-batch size (``n_ubatch``) costs in prefill time and saves in memory.

``LlamaContext`` computes ``UBATCH_TOKENS`` (256) tokens at a time within a batch, half
llama.cpp's default: the compute buffer, which grows with it, is half as large. This times the
prefill of a real prompt (a Spider database's schema and a question, as the app builds it) in
two contexts of one loaded model, one at 512 and one at 256, alternating, and prints each
one's median and the ratio (256 / 512) in the same run, with the CPU kind and the load average.
Not a test; the memory side is ``benchmarks.cold_start``'s RSS.

    nice -n 10 python -m benchmarks.ubatch --model qwen2.5-coder-1.5b --database car_1 --repeats 4 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from text2sql import cpu

SIZES = (512, 256)


def contexts_by_ubatch(generator, threads: int) -> dict:
    """One fresh context per ``n_ubatch`` in ``SIZES``, over the generator's loaded model."""
    from text2sql.backends import llama_runtime

    contexts = {}
    for size in SIZES:
        original, llama_runtime.UBATCH_TOKENS = llama_runtime.UBATCH_TOKENS, size
        try:
            contexts[size] = llama_runtime.LlamaContext(generator.model, None, 4096, 2, threads)
        finally:
            llama_runtime.UBATCH_TOKENS = original
    return contexts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--database", default="car_1", help="a Spider dev database: its schema is the prompt")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from text2sql.engine import load_generator
    from text2sql.pipeline import Database
    from text2sql.prompt import build_messages
    from text2sql.spider import Spider

    generator = load_generator(args.model)
    schema = Database.from_file(Spider().db_path(args.database)).schema
    prompt = generator.token_ids(build_messages(schema, "How many are there?"))
    print(f"{cpu.summary()}; {args.threads} threads; {args.model}; {len(prompt)} prompt tokens ({args.database}); "
          f"load average at start {os.getloadavg()[0]:.1f}")
    contexts = contexts_by_ubatch(generator, args.threads)
    seconds = {size: [] for size in SIZES}
    for _ in range(args.repeats):
        for size, context in contexts.items():
            context.clear()
            started = time.perf_counter()
            context.feed([(1, prompt, 0)])
            seconds[size].append(time.perf_counter() - started)
    for size, times in seconds.items():
        print(f"n_ubatch {size}: prefill median {statistics.median(times):.2f} s (min {min(times):.2f}, "
              f"max {max(times):.2f}, {args.repeats} runs)")
    ratio = statistics.median(seconds[256]) / statistics.median(seconds[512])
    print(f"256 / 512: {ratio:.3f}x the time; load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
