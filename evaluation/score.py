"""Score a predictions file against Spider: EX, EM, chatty rate, valid-SQL rate, per hardness.

Input: JSON lines ``{"id": <index in the split's file>, "db_id": ..., "prediction": "<sql>"}``;
``raw`` (the model's whole output, for the chatty rate), ``latency_ms``, ``model`` and a
best-of-k run's ``candidates`` are used when present, other keys ignored. Items whose
database is missing (dev's wta_1) are counted, listed and excluded. Output in ``--out``:
``scored.jsonl`` (one line per item: ``{"id", "ex", "em", "hardness", "error",
"any_candidate_ex"}``, the last null but for best-of-k lines), ``metrics.json``,
``report.md`` and ``chart.png``. Scoring runs in ``--workers`` processes, one database at a
time each; every query runs in the sandbox with a ``--timeout`` (seconds, default the sandbox's).

    python -m evaluation.score --predictions results/RUN/predictions.jsonl [--spider DIR] [--out DIR] [--split dev]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """The predictions in ``path``; a line cut short by an interrupted run is skipped."""
    predictions = []
    for line in Path(path).read_text().splitlines():
        try:
            predictions.append(json.loads(line))
        except ValueError:
            continue
    return predictions


@functools.cache
def _matcher(tables_json: str):
    from evaluation.exact_match import ExactMatcher

    return ExactMatcher.from_tables_json(tables_json)


def score_database(
    spider_root: str, db_id: str, items: list[tuple[int, str, str, tuple[str, ...] | None]], timeout_s: float | None
) -> list[dict]:
    """EX and EM for ``items`` = [(id, gold, prediction, candidates or None)] on one database
    (runs in a worker)."""
    from evaluation.execution import execution_match
    from text2sql.spider import Spider

    spider = Spider(spider_root)
    matcher = _matcher(str(spider.root / "tables.json"))
    results = []
    for item_id, gold, prediction, candidates in items:
        outcome = execution_match(spider.db_path(db_id), gold, prediction, timeout_s)
        em, em_problem = matcher.match(db_id, gold, prediction)
        results.append(
            {
                "id": item_id,
                "ex": outcome.match,
                "em": em,
                "executed": outcome.executed,
                "error": outcome.error,
                "em_problem": em_problem,
                "any_candidate_ex": None if candidates is None else outcome.match or any_right(
                    spider.db_path(db_id), gold, set(candidates) - {prediction, ""}, timeout_s
                ),
            }
        )
    return results


def score(predictions: Iterable[dict], spider, split: str = "dev", timeout_s: float | None = None, workers: int = 2):
    """Score ``predictions``; returns (items, context) where items are the scored predictions in
    id order (with hardness, chatty and latency) and context says what was left out."""
    from tqdm import tqdm

    from text2sql.hardness import hardness
    from text2sql.sqlout import extract_sql

    examples = spider.examples(split)
    by_id = {p["id"]: p for p in predictions}
    unknown = sorted(i for i in by_id if not 0 <= i < len(examples))
    wrong_db = sorted(
        i for i in by_id if i not in unknown and by_id[i].get("db_id", examples[i].db_id) != examples[i].db_id
    )
    if unknown or wrong_db:
        raise ValueError(
            f"Predictions that don't fit {split}: unknown ids {unknown[:10]}, wrong db_id {wrong_db[:10]}"
        )
    missing_db = [e.id for e in examples if not spider.has_database(e.db_id)]
    scorable = [examples[i] for i in sorted(by_id) if spider.has_database(examples[i].db_id)]
    groups = [
        (db, list(group))
        for db, group in itertools.groupby(sorted(scorable, key=lambda e: e.db_id), key=lambda e: e.db_id)
    ]
    results = {}
    with ProcessPoolExecutor(max_workers=workers) as pool, tqdm(total=len(scorable), desc="scoring", unit="q") as bar:
        futures = [
            pool.submit(
                score_database,
                str(spider.root),
                db,
                [(e.id, e.query, by_id[e.id].get("prediction") or "", candidate_sqls(by_id[e.id])) for e in group],
                timeout_s,
            )
            for db, group in groups
        ]
        for future in as_completed(futures):
            for result in future.result():
                results[result["id"]] = result
            bar.update(len(future.result()))
    items = []
    for example in scorable:
        prediction = by_id[example.id]
        raw = prediction.get("raw")
        items.append(
            {
                **results[example.id],
                "db_id": example.db_id,
                "hardness": hardness(example.query),
                "chatty": extract_sql(raw).chatty if raw is not None else None,
                "latency_ms": prediction.get("latency_ms"),
            }
        )
    context = {
        "total": len(examples),
        "missing_db_ids": missing_db,
        "missing_dbs": sorted({examples[i].db_id for i in missing_db}),
        "not_predicted": sum(spider.has_database(e.db_id) and e.id not in by_id for e in examples),
        "timeout_s": timeout_s,
    }
    return items, context


def any_right(db_path, gold: str, queries: set[str], timeout_s: float | None) -> bool:
    """Whether one of a best-of-k line's other queries returns the gold result: with the
    prediction's own match, what a perfect selection would have scored."""
    from evaluation.execution import execution_match

    return any(execution_match(db_path, gold, sql, timeout_s).match for sql in queries)


def candidate_sqls(prediction: dict) -> tuple[str, ...] | None:
    """A best-of-k line's candidate queries (None for other lines)."""
    candidates = prediction.get("candidates")
    return None if candidates is None else tuple(c.get("sql") or "" for c in candidates)


def write_scored(items: list[dict], path: Path) -> None:
    keys = ("id", "ex", "em", "hardness", "error", "any_candidate_ex")
    with open(path, "w") as handle:
        handle.writelines(json.dumps({k: item[k] for k in keys}) + "\n" for item in items)


def score_to_folder(
    predictions_path, out, spider_dir=None, split="dev", model=None, timeout_s=None, workers=2
) -> dict:
    """Score a predictions file and write scored.jsonl, metrics.json, report.md and chart.png to ``out``."""
    from evaluation.report import build_metrics, write_report
    from text2sql.spider import Spider

    from text2sql.settings import get_settings

    timeout_s = timeout_s or get_settings().query_timeout_s
    predictions = read_predictions(predictions_path)
    model = (
        model or next((p["model"] for p in predictions if p.get("model")), None) or Path(predictions_path).parent.name
    )
    spider = Spider(spider_dir)
    items, context = score(predictions, spider, split, timeout_s, workers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_scored(items, out / "scored.jsonl")
    metrics = build_metrics(items, model=model, split=split, predictions=predictions)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(out, metrics, items, context, predictions_path)
    return metrics


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--predictions", required=True, help="JSON lines with id, db_id, prediction (and raw, latency_ms)"
    )
    parser.add_argument(
        "--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: results/<model>/)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--model", default=None, help="model name for the report (default: from the predictions)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per query (default: the sandbox's limit)")
    parser.add_argument("--workers", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    predictions = read_predictions(args.predictions)
    model = (
        args.model
        or next((p["model"] for p in predictions if p.get("model")), None)
        or Path(args.predictions).parent.name
    )
    out = args.out or Path("results") / model
    metrics = score_to_folder(args.predictions, out, args.spider, args.split, model, args.timeout, args.workers)
    print(f"{model}: n = {metrics['n']}  EX {100 * metrics['ex']:.1f}%  EM {100 * metrics['em']:.1f}%  -> {out}")


if __name__ == "__main__":
    main()
