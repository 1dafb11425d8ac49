"""Item-by-item agreement of our EM and EX with the official test-suite-sql-eval scripts.

Scores one predictions file twice: with ``evaluation`` (ours) and with the official
``evaluation.py`` / ``exec_eval.py`` of taoyds/test-suite-sql-eval, imported at run time from a
checkout given with ``--official`` (not part of this repository; it needs ``nltk`` and
``sqlparse`` importable). The official code is driven the way its ``evaluate()`` does it:
``value`` replaced by ``1`` in the prediction, Spider's parser (an unparseable prediction
becomes the empty query), values dropped, foreign keys mapped, ``eval_exact_match``; for EX
``eval_exec_match`` with ``keep_distinct=True`` and no value plugging. Predictions are put on
one line first, as the official predictions file needs. NLTK's sentence splitter needs the
``punkt`` data, which can't be downloaded here; tokens are taken per line instead
(``preserve_line=True``), which only differs for a ". " followed by a capital letter outside
quotes. A prediction our sandbox stopped for running too long is not run officially (the
official time limit never fires) and is counted apart.

    PYTHONPATH=/path/to/nltk-and-sqlparse python -m benchmarks.em_agreement \\
        --official ../test-suite-sql-eval --predictions results/RUN/predictions.jsonl
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path


def load_official(folder: Path):
    """The official evaluation module (as ``official_evaluation``; its name clashes with our package)."""
    sys.path.insert(0, str(folder))
    import nltk
    import process_sql

    process_sql.word_tokenize = functools.partial(nltk.word_tokenize, preserve_line=True)
    spec = importlib.util.spec_from_file_location("official_evaluation", folder / "evaluation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, process_sql


EMPTY_SQL = {
    "except": None,
    "from": {"conds": [], "table_units": []},
    "groupBy": [],
    "having": [],
    "intersect": None,
    "limit": None,
    "orderBy": [],
    "select": [False, []],
    "union": None,
    "where": [],
}


def official_em(official, process_sql, kmaps, db_path: str, db_id: str, gold: str, predicted: str) -> bool:
    schema = process_sql.Schema(process_sql.get_schema(db_path))
    gold_sql = process_sql.get_sql(schema, gold)
    try:
        predicted_sql = process_sql.get_sql(schema, predicted)
    except Exception:  # the official script's bare except: any parser failure is the empty query
        predicted_sql = json.loads(json.dumps(EMPTY_SQL))
    rebuilt = []
    for sql in (gold_sql, predicted_sql):
        valid = official.build_valid_col_units(sql["from"]["table_units"], schema)
        rebuilt.append(official.rebuild_sql_col(valid, official.rebuild_sql_val(sql), kmaps[db_id]))
    return bool(official.Evaluator().eval_exact_match(rebuilt[1], rebuilt[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="a checkout of taoyds/test-suite-sql-eval")
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--spider", default=None)
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()

    from evaluation.exact_match import ExactMatcher
    from evaluation.execution import execution_match
    from evaluation.score import read_predictions
    from text2sql.spider import Spider

    official, process_sql = load_official(args.official.resolve())
    spider = Spider(args.spider)
    kmaps = official.build_foreign_key_map_from_json(str(spider.root / "tables.json"))
    matcher = ExactMatcher.from_tables_json(spider.root / "tables.json")
    examples = spider.examples(args.split)
    tally = {"em": Counter(), "ex": Counter()}
    disagreements = {"em": [], "ex": []}
    stopped = 0
    predictions = [p for p in read_predictions(args.predictions) if spider.has_database(examples[p["id"]].db_id)]
    for prediction in predictions:
        example = examples[prediction["id"]]
        one_line = " ".join((prediction.get("prediction") or "").split())
        official_input = one_line.replace("value", "1")
        db = str(spider.db_path(example.db_id))
        ours_em, _ = matcher.match(example.db_id, example.query, one_line)
        theirs_em = official_em(official, process_sql, kmaps, db, example.db_id, example.query, official_input)
        outcome = execution_match(db, example.query, one_line)
        pairs = {"em": (ours_em, theirs_em)}
        if outcome.error and outcome.error.startswith("Stopped"):
            stopped += 1
        else:
            theirs_ex = official.eval_exec_match(db, official_input, example.query, False, True, False)
            pairs["ex"] = (outcome.match, bool(theirs_ex))
        for metric, (ours, theirs) in pairs.items():
            tally[metric][(ours, theirs)] += 1
            if ours != theirs:
                disagreements[metric].append((example.id, ours, theirs, one_line, example.query))

    print(f"{len(predictions)} predictions from {args.predictions}\n")
    print("| metric | items | agree | agreement % | ours 1, official 0 | ours 0, official 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for metric, counts in tally.items():
        total = sum(counts.values())
        agree = counts[(True, True)] + counts[(False, False)]
        print(
            f"| {metric.upper()} | {total} | {agree} | {100 * agree / max(1, total):.2f} "
            f"| {counts[(True, False)]} | {counts[(False, True)]} |"
        )
    print(f"\nEX not compared for {stopped} predictions our sandbox stopped at its time limit.")
    for metric, rows in disagreements.items():
        for item_id, ours, theirs, predicted, gold in rows:
            print(
                f"\n{metric.upper()} #{item_id}: ours {int(ours)}, official {int(theirs)}\n  pred: {predicted}\n  gold: {gold}"
            )


if __name__ == "__main__":
    main()
