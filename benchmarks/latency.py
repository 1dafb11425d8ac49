"""Latency of one `ask`, llama.cpp and transformers (or several models) side by side, on the same questions.

For each engine (``TEXT2SQL_ENGINE``) it loads the model (timed: the first answer after a
start waits for it), then for ``--questions`` Spider dev questions, each about another
database, times the whole pipeline (schema read, prompt fitting, generation, SQL extraction,
sandboxed execution) three ways:

- **new database**: nothing about the database is cached (the prefix store is emptied first);
- **after a warm-up**: the database's prefix was computed when it was chosen (the app's
  ``Service.warm_up``, untimed: the visitor is typing), then the question is asked;
- **next question, same database**: another question about it, right after.

With ``--best-of K`` it also times best-of-K on the next question, warm. ``--model a,b``
times each model in turn (on each engine). ``--schema-tables N`` times each of those twice,
with the whole schema and with each prompt cut to the question's N likeliest tables (setting
``schema_tables``: shorter prompts, but a database it cuts has no shared prefix to warm up). It prints p50 and p95 per run and, for two runs,
the ratio of the first's p50 to the second's (llama.cpp / transformers, or model a / model
b), with the CPU's flags and the load average (the machine may be shared). Not a test:
numbers depend on the machine.

    nice -n 10 python benchmarks/latency.py [--questions 20] [--threads 2] [--model qwen2.5-coder-0.5b-spider] \\
        [--engines llama.cpp,transformers] [--best-of 8] [--schema-tables 3]
    nice -n 10 python -m benchmarks.latency --threads 1 --engines llama.cpp --model qwen2.5-coder-1.5b,qwen2.5-coder-0.5b-spider
"""

from __future__ import annotations

import argparse
import os
import time

from text2sql import cpu


KINDS = ("new database", "after a warm-up", "next question, same database")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pick_questions(n: int):
    """(spider, [(first, second) question pairs]), each pair about one database, n databases."""
    from text2sql.spider import Spider

    spider = Spider()
    by_db: dict[str, list] = {}
    for example in spider.examples("dev"):
        if spider.has_database(example.db_id):
            by_db.setdefault(example.db_id, []).append(example)
    pairs = [(examples[0], examples[len(examples) // 2]) for examples in by_db.values() if len(examples) > 1]
    step = max(1, len(pairs) // n)
    return spider, pairs[::step][:n]


def time_engine(
    engine_name: str, model: str | None, spider, pairs, best_of: int | None, schema_tables: int = 0
) -> dict[str, list[float]]:
    from text2sql import engine
    from text2sql.pipeline import Database, ask, warm_up
    from text2sql.selection import Decoding

    os.environ["TEXT2SQL_ENGINE"] = engine_name
    os.environ["TEXT2SQL_SCHEMA_TABLES"] = str(schema_tables)
    engine.unload_all()
    started = time.perf_counter()
    generator = engine.load_generator(model)
    times: dict[str, list[float]] = {"load": [time.perf_counter() - started]}
    shown = f"the {schema_tables} likeliest tables" if schema_tables else "the whole schema"
    print(f"\n{engine_name}: {generator.spec.name}, {generator.engine}, prompts show {shown}\n  weights: {generator.origin}")
    print(f"  loaded in {times['load'][0]:.1f} s")
    for first, second in pairs:
        database = Database.from_file(spider.db_path(first.db_id))
        row = {}
        for kind, question, warm in ((KINDS[0], first, False), (KINDS[1], first, True), (KINDS[2], second, False)):
            if kind != KINDS[2]:
                generator.prefixes.entries.clear()
            if warm:
                warm_up(database, model)
            started = time.perf_counter()
            ask(Database.from_file(spider.db_path(first.db_id)), question.question, model=model)
            row[kind] = time.perf_counter() - started
        if best_of:
            started = time.perf_counter()
            ask(database, second.question, model=model, decoding=Decoding.best_of(best_of))
            row[f"best of {best_of}, same database"] = time.perf_counter() - started
        for kind, seconds in row.items():
            times.setdefault(kind, []).append(seconds)
        print(f"  {first.db_id:28s} " + "  ".join(f"{kind} {seconds:5.2f} s" for kind, seconds in row.items()))
    engine.unload_all()
    return times


def run_label(model: str | None, engine_name: str, schema_tables: int | None) -> str:
    """A run's column title: the engine, with the model and the tables shown where those vary."""
    label = f"{model} on {engine_name}" if model else engine_name
    if schema_tables is None:
        return label
    return f"{label}, {schema_tables} tables" if schema_tables else f"{label}, all tables"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20, help="databases (two questions each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-spider",
                        help="registry model(s), comma-separated (default: the fine-tuned 0.5B, which runs on both engines)")
    parser.add_argument("--engines", default="llama.cpp,transformers")
    parser.add_argument("--best-of", type=int, default=None, help="also time best-of-K on the warm database")
    parser.add_argument(
        "--schema-tables", type=int, default=0,
        help="also time every run with each prompt cut to the question's N likeliest tables",
    )
    args = parser.parse_args()
    if args.schema_tables < 0:
        raise SystemExit("--schema-tables must be the number of tables to show (0: time the whole schema only).")

    os.environ["TEXT2SQL_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    spider, pairs = pick_questions(args.questions)
    print(f"{cpu.summary()}; {args.threads} threads; load average at start {os.getloadavg()[0]:.1f}")
    engines = args.engines.split(",")
    models = args.model.split(",") if args.model else [None]
    cuts = [0, args.schema_tables] if args.schema_tables else [0]
    results = {
        run_label(model if len(models) > 1 else None, engine_name, tables if len(cuts) > 1 else None):
            time_engine(engine_name, model, spider, pairs, args.best_of, tables)
        for model in models for engine_name in engines for tables in cuts
    }
    runs = list(results)
    width = max(18, *(len(run) + 5 for run in runs))

    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; {len(pairs)} databases")
    print(f"{'seconds':36s}" + "".join(f"{run + ' p50':>{width}s}{'p95':>8s}" for run in runs)
          + ("   ratio of p50s" if len(runs) == 2 else ""))
    for kind in results[runs[0]]:
        cells = "".join(f"{percentile(results[r][kind], .5):{width}.2f}{percentile(results[r][kind], .95):8.2f}" for r in runs)
        ratio = ""
        if len(runs) == 2 and kind in results[runs[1]]:
            ratio = f"{percentile(results[runs[0]][kind], .5) / percentile(results[runs[1]][kind], .5):17.2f}"
        print(f"{kind:36s}{cells}{ratio}")


if __name__ == "__main__":
    main()
