"""End-to-end latency of `ask` with the embedded default model, against a bare `generate`.

For 20 Spider dev questions (spread over the dev databases) it times the whole pipeline
(schema read, prompt fitting, generation, SQL extraction, sandboxed execution) and then a
bare ``model.generate`` of the very same prompt tokens forced to produce the same number of
new tokens. The ratio is our overhead. Not a test: numbers depend on the machine.

    python benchmarks/latency.py [--questions 20] [--threads 2] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import statistics
import time


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pick_questions(n: int):
    from text2sql.spider import Spider

    spider = Spider()
    runnable = [e for e in spider.examples("dev") if spider.has_database(e.db_id)]
    step = max(1, len(runnable) // n)
    return spider, runnable[::step][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    import torch

    from text2sql.engine import load_generator
    from text2sql.pipeline import Database, ask
    from text2sql.prompt import build_messages, fit_schema

    torch.set_num_threads(args.threads)
    spider, examples = pick_questions(args.questions)
    generator = load_generator(args.model)
    tokenizer, model = generator.tokenizer, generator.base.model
    print(f"model {generator.spec.name} ({generator.origin}), dtype {generator.base.dtype}, {args.threads} threads")

    rows = []
    for example in examples:
        started = time.perf_counter()
        database = Database.from_file(spider.db_path(example.db_id))
        answer = ask(database, example.question, model=args.model)
        end_to_end = time.perf_counter() - started
        new_tokens = max(1, len(tokenizer(answer.generation.raw, add_special_tokens=False)["input_ids"]))
        fitted, _ = fit_schema(database.schema, example.question, generator.count_tokens, generator.max_prompt_tokens)
        inputs = tokenizer(generator.render(build_messages(fitted, example.question)), return_tensors="pt", add_special_tokens=False)
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
        bare = time.perf_counter() - started
        rows.append((example.db_id, inputs["input_ids"].shape[1], new_tokens, end_to_end, bare))
        print(f"{example.db_id:28s} prompt {rows[-1][1]:5d} tok  new {new_tokens:3d} tok  ask {end_to_end:6.2f} s  bare {bare:6.2f} s")

    ask_times = [r[3] for r in rows]
    bare_times = [r[4] for r in rows]
    tokens = sum(r[2] for r in rows)
    print()
    print(f"{'':24s}{'p50 (s)':>10s}{'p95 (s)':>10s}{'mean (s)':>10s}")
    for label, values in (("ask, end to end", ask_times), ("bare generate", bare_times)):
        print(f"{label:24s}{percentile(values, .5):10.2f}{percentile(values, .95):10.2f}{statistics.mean(values):10.2f}")
    print(f"tokens/s (ask): {tokens / sum(ask_times):.1f}   tokens/s (bare): {tokens / sum(bare_times):.1f}")
    print(f"overhead ratio ask / bare (total time): {sum(ask_times) / sum(bare_times):.3f}")


if __name__ == "__main__":
    main()
