"""Generate SQL for every Spider question with a registry model, then score it.

Questions are answered database by database in batches of ``--batch-size``, so each batch
shares the cached KV of the system prompt + schema (both backends keep it: docs/engine.md).
Every answered batch is appended to ``OUT/predictions.jsonl`` at once; a rerun skips the ids
already there, so an interrupted run resumes where it stopped. Items whose database is
missing (dev's wta_1) are not generated: the scorer counts and lists them.

``--mode best-of-k`` (``text2sql.selection``) draws ``--k`` candidates per question (the
greedy one, then k - 1 at ``--temperature``; batch b's draws are seeded with ``--seed`` + the
id of its first question), checks and runs them in the sandbox, and keeps the one the
selection rule picks among their results (``text2sql.selection.select``); a question whose
candidates all fail gets one repair round.

``--concurrency N`` (models behind a server, ``backend: openai``) answers N batches at once:
the server batches the requests (vLLM, TGI) or queues them (llama.cpp's servers). Lines are
written in the same order as without it, so the file and resuming are the same; ``latency_ms``
then includes time waiting at the server. In-process engines batch instead (``--batch-size``).

``--schema-tables N`` shows each prompt only the N tables most related to its question
(setting ``schema_tables``, ``text2sql.prompt.likely_tables``) instead of the whole schema.
Each line then records ``"schema_tables": N`` (the settings in ``RUN_SETTINGS``, where not at
their default), and a rerun into a folder made otherwise is refused. ``evaluation.schema_tables``
measures, without generating, how often the cut keeps every table the gold query reads and how
many prompt tokens it saves, and pairs a cut run with a whole-schema run.

``--no-column-fixes`` runs the model's SQL as written (setting ``fix_column_names`` off: no
column names put right, ``text2sql.sqlcheck``), recorded on each line the same way. Runs made
before 2026-11-30 ran it as written too, without recording it.

``--questions FILE`` (JSON lines ``{"id", "db_id", "question", "reworded"}``, checked by
``text2sql.spider.read_rewordings``) asks the file's questions in its wording instead of
Spider's (only those ids); each line then also keeps ``original_question``, and a rerun into
a folder answered in another wording is refused. ``evaluation.compare`` pairs such a run with
a run on Spider's wording, or with another model's run on the same file.

Each line: ``{"id", "db_id", "question", "prediction", "raw", "chatty", "latency_ms",
"batch_size", "prompt_tokens", "warnings", "model", "engine", "decoding"}``, and in best-of-k mode
also ``"selection_rule"``, ``"candidates"`` (each one's sql, raw, logprob, tokens, error, votes,
and its group's score and reason) and ``"repair"`` (the same, or null). ``latency_ms`` is the
question's share of its batch's time: generation, and in best-of-k mode also the candidates'
checks and the repair round. Then
``evaluation.score`` writes scored.jsonl, metrics.json (with the decoding), report.md and
chart.png next to it; metrics.json names the engine (backend, weights, CPU backend, threads).

    nice -n 10 python -m evaluation.evaluate --model qwen2.5-coder-0.5b --split dev --out results/qwen2.5-coder-0.5b-base
    nice -n 10 python -m evaluation.evaluate --model qwen2.5-coder-0.5b --mode best-of-k --k 8 --batch-size 4 \
        --out results/qwen2.5-coder-0.5b-base-bestof8
    python -m evaluation.evaluate --model smollm2-135m --limit 20 --out /tmp/smoke
    TEXT2SQL_REGISTRY=serving/vllm/models.yaml python -m evaluation.evaluate --model qwen2.5-coder-0.5b-spider-vllm \
        --batch-size 1 --concurrency 8 --out results/qwen2.5-coder-0.5b-spider-vllm
    nice -n 10 python -m evaluation.evaluate --model qwen2.5-coder-0.5b --split train \
        --questions evaluation/robustness/train_held_out_reworded.jsonl --out results/robustness/qwen2.5-coder-0.5b-base
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
from pathlib import Path

from text2sql import cpu
from text2sql.selection import GREEDY, MODES, Decoding
from text2sql.settings import RUN_SETTINGS, Settings, get_settings


def pending_examples(
    spider,
    split: str,
    done: set[int],
    limit: int | None,
    databases: set[str] | None = None,
    questions: dict[int, str] | None = None,
) -> list:
    """The split's questions that have a database (one of ``databases`` when given; only the
    ids of ``questions``, worded as it words them, when given), in file order (the first
    ``limit``), minus ``done``."""
    runnable = [
        e if questions is None else dataclasses.replace(e, question=questions[e.id])
        for e in spider.examples(split)
        if spider.has_database(e.db_id)
        and (databases is None or e.db_id in databases)
        and (questions is None or e.id in questions)
    ]
    if limit is not None:
        runnable = runnable[:limit]
    return [e for e in runnable if e.id not in done]


def batches(examples: list, size: int):
    """Consecutive runs of at most ``size`` questions about one database."""
    for _, group in itertools.groupby(examples, key=lambda e: e.db_id):
        group = list(group)
        for start in range(0, len(group), size):
            yield group[start : start + size]


def generations(generator, spider, batch: list, decoding: Decoding) -> list:
    """The batch's generations: greedy SQL alone, or best-of-k's chosen SQL with its candidates."""
    from text2sql.pipeline import Database, answer_batch, generate_sql_batch

    questions = [e.question for e in batch]
    if decoding.is_greedy:
        return generate_sql_batch(generator, spider.schema(batch[0].db_id), questions)
    db_id = batch[0].db_id
    database = Database(schema=spider.schema(db_id), sandbox=spider.sandbox(db_id), has_data=True, label=db_id)
    seeded = dataclasses.replace(decoding, seed=decoding.seed + batch[0].id)
    return [answer.generation for answer in answer_batch(generator, database, questions, seeded)]


def prediction_lines(
    generator, spider, batch: list, decoding: Decoding = Decoding(), originals: dict[int, str] | None = None
) -> list[dict]:
    """One predictions line per question; with ``originals`` (id -> Spider's wording) the
    question asked is a rewording and the original is kept too."""
    lines = []
    for example, generation in zip(batch, generations(generator, spider, batch, decoding)):
        line = {
            "id": example.id,
            "db_id": example.db_id,
            "question": example.question,
            **({"original_question": originals[example.id]} if originals is not None else {}),
            "prediction": generation.sql,
            "raw": generation.raw,
            "chatty": generation.chatty,
            "latency_ms": generation.execution_time_ms,
            "batch_size": len(batch),
            "prompt_tokens": generation.prompt_tokens,
            "warnings": generation.warnings,
            "model": generation.model,
            "engine": generator.engine,
            "decoding": decoding.as_dict(),
            "cpu": cpu.kind(),
        }
        line.update(run_settings())
        if not decoding.is_greedy:
            line["selection_rule"] = get_settings().selection_rule
            line["candidates"] = [c.as_dict() for c in generation.candidates]
            line["repair"] = generation.repair.as_dict() if generation.repair else None
        lines.append(line)
    return lines


def check_same_decoding(done: list[dict], decoding: Decoding, path: Path) -> None:
    """Refuse to add to predictions made another way (lines without a decoding were greedy)."""
    for line in done:
        if line.get("decoding", {"mode": GREEDY}) != decoding.as_dict():
            raise SystemExit(
                f"{path} holds predictions made with decoding {line.get('decoding')}, not {decoding.as_dict()}; "
                "choose another --out."
            )


def run_settings() -> dict:
    """The ``RUN_SETTINGS`` (what a prompt shows, what is done with the SQL) not at their default."""
    settings = get_settings()
    return {name: value for name in RUN_SETTINGS if (value := getattr(settings, name)) != getattr(Settings, name)}


def check_same_settings(done: list[dict], path: Path) -> None:
    """Refuse to add to predictions made with other ``RUN_SETTINGS`` (absent: defaults)."""
    from evaluation.report import recorded_settings

    wanted = run_settings()
    if done and (recorded := recorded_settings(done)) != wanted:
        raise SystemExit(
            f"{path} holds predictions made with settings {recorded or 'at their defaults'}, "
            f"not {wanted or 'at their defaults'}; choose another --out."
        )


def check_same_questions(done: list[dict], spider, split: str, questions: dict[int, str] | None, path: Path) -> None:
    """Refuse to add to predictions whose questions were worded otherwise (Spider's, or another file's)."""
    asked = {e.id: e.question for e in spider.examples(split)} | (questions or {})
    for line in done:
        if line.get("question") is not None and line["question"] != asked.get(line["id"]):
            wording = "the --questions file's" if questions is not None else "Spider's"
            raise SystemExit(
                f"{path} answered question {line['id']} as {line['question']!r}, not in {wording} wording "
                f"{asked.get(line['id'])!r}; choose another --out."
            )


def read_questions(path: str, spider, split: str) -> dict[int, str]:
    """{id: question as worded in ``path``}; a file that doesn't match the split is refused."""
    from text2sql.spider import read_rewordings

    try:
        return read_rewordings(path, spider.examples(split))
    except (OSError, ValueError) as error:
        raise SystemExit(f"--questions: {error} (ids and questions must be those of --split {split}).") from None


def check_same_backend(done: list[dict], engine: str, path: Path) -> None:
    """Refuse to add to predictions another backend made (llama.cpp and transformers differ)."""
    backend = engine.split()[0]
    for line in done:
        if line.get("engine") and line["engine"].split()[0] != backend:
            raise SystemExit(f"{path} holds predictions made by {line['engine']}, not {backend}; choose another --out.")


def generate_predictions(
    model: str,
    spider,
    split: str,
    out: Path,
    limit: int | None,
    batch_size: int,
    decoding: Decoding = Decoding(),
    databases: set[str] | None = None,
    questions: dict[int, str] | None = None,
    registry=None,
    concurrency: int = 1,
) -> Path:
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from evaluation.score import read_predictions
    from text2sql.engine import backend_for, load_generator
    from text2sql.registry import default_registry

    path = out / "predictions.jsonl"
    done = read_predictions(path) if path.exists() else []
    check_same_decoding(done, decoding, path)
    check_same_questions(done, spider, split, questions, path)
    check_same_settings(done, path)
    # Rewrite without a line cut short by an interrupted run, so appends start on a fresh line.
    path.write_text("".join(json.dumps(p) + "\n" for p in done))
    todo = pending_examples(spider, split, {p["id"] for p in done}, limit, databases, questions)
    if not todo:
        return path
    originals = {e.id: e.question for e in spider.examples(split)} if questions is not None else None
    if concurrency > 1 and backend_for((registry or default_registry()).get(model)) != "openai":
        raise SystemExit("--concurrency is for models behind a server (backend openai); in-process engines batch: --batch-size.")
    generator = load_generator(model, registry)
    check_same_backend(done, generator.engine, path)
    todo_batches = list(batches(todo, batch_size))

    def answer(batch: list) -> list[dict]:
        return prediction_lines(generator, spider, batch, decoding, originals)

    pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None
    try:
        answered = pool.map(answer, todo_batches) if pool else map(answer, todo_batches)
        with (
            open(path, "a") as handle,
            tqdm(total=len(todo), desc=f"generating ({len(done)} done before)", unit="q") as bar,
        ):
            for batch, lines in zip(todo_batches, answered):  # in order, as they finish
                handle.writelines(json.dumps(line) + "\n" for line in lines)
                handle.flush()
                bar.update(len(batch))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)  # an interrupted run stops asking
    return path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registry model name (text2sql models)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions that have a database")
    parser.add_argument(
        "--databases",
        default=None,
        help="only questions about these databases (comma-separated db_ids), e.g. the ones a training run held out",
    )
    parser.add_argument(
        "--questions",
        default=None,
        help="JSON lines {id, db_id, question, reworded}: ask only these ids, in the reworded wording",
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="a LoRA adapter folder (e.g. a training checkpoint) to use instead of the model's own adapter",
    )
    parser.add_argument("--out", default=None, help="output folder (default: results/<model>/)")
    parser.add_argument(
        "--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="questions per generate call (one database each)")
    parser.add_argument(
        "--concurrency", type=int, default=1,
        help="models behind a server (backend openai): batches answered at once (default 1)",
    )
    parser.add_argument("--mode", choices=MODES, default=GREEDY, help="greedy, or best-of-k (text2sql.selection)")
    parser.add_argument("--k", type=int, default=None, help="best-of-k: candidates per question (default: setting best_of_k)")
    parser.add_argument(
        "--temperature", type=float, default=None, help="best-of-k: sampling temperature (default: setting)"
    )
    parser.add_argument("--seed", type=int, default=0, help="best-of-k: base seed of the draws")
    parser.add_argument(
        "--schema-tables", type=int, default=None,
        help="show each prompt only the N tables most related to its question (default: setting schema_tables, 0: all)",
    )
    parser.add_argument(
        "--no-column-fixes", action="store_true",
        help="run the model's SQL as written: don't put unresolvable column names right (setting fix_column_names)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch, llama.cpp; default: their choice)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per query when scoring")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes")
    return parser


def parse_databases(spider, text: str | None) -> set[str] | None:
    """The db_ids of ``--databases``; each must have a database file."""
    if not text:
        return None
    databases = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(d for d in databases if not spider.has_database(d))
    if unknown:
        raise SystemExit(f"No database file for: {', '.join(unknown)} (under {spider.root / 'database'}).")
    return databases


def main(argv: list[str] | None = None) -> None:
    from evaluation.score import score_to_folder
    from text2sql.registry import default_registry
    from text2sql.spider import Spider

    args = make_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["TEXT2SQL_THREADS"] = str(args.threads)
    if args.schema_tables is not None:
        if args.schema_tables < 0:
            raise SystemExit("--schema-tables must be 0 (off) or a number of tables.")
        os.environ["TEXT2SQL_SCHEMA_TABLES"] = str(args.schema_tables)
    if args.no_column_fixes:
        os.environ["TEXT2SQL_FIX_COLUMN_NAMES"] = "0"
    decoding = Decoding.from_mode(args.mode, args.k, args.temperature, args.seed)
    registry, model = None, args.model
    if args.adapter:
        registry, model = default_registry().with_adapter(args.model, Path(args.adapter))
    out = Path(args.out or Path("results") / args.model)
    out.mkdir(parents=True, exist_ok=True)
    spider = Spider(args.spider)
    databases = parse_databases(spider, args.databases)
    questions = read_questions(args.questions, spider, args.split) if args.questions else None
    if args.concurrency < 1:
        raise SystemExit("--concurrency must be at least 1.")
    path = generate_predictions(
        model, spider, args.split, out, args.limit, args.batch_size, decoding, databases, questions, registry,
        args.concurrency,
    )
    metrics = score_to_folder(path, out, args.spider, args.split, model, args.timeout, args.workers)
    print(f"{model}: n = {metrics['n']}  EX {100 * metrics['ex']:.1f}%  EM {100 * metrics['em']:.1f}%  -> {out}")


if __name__ == "__main__":
    main()
