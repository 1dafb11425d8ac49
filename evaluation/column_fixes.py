"""Committed runs as they score with their column names put right
(``text2sql.sqlcheck.fix_column_names``, which the pipeline now applies to every query), paired
with the runs as made. No model.

A greedy run: each prediction's SQL is put right against its database's schema, written to a
run folder of its own (``--out``), scored, and compared (EX, valid SQL, McNemar) in
``comparison.json`` there.

A best-of-k run (``--first N``: its first N candidates): each question's candidates are checked
(and put right) again, and three ways of counting the put-right ones are compared, each scored
by execution against gold, where nothing runs the run's own repair standing in: "as written"
(they don't count: the runs as made), "where none ran as written" (``text2sql.selection.counted``,
the pipeline's rule) and "voting beside the others". Written to ``--out`` as JSON. A dev
best-of-k run is then selected again with the rule by ``evaluation.fewer_candidates --k K
--repairs-from RUN``.

    python -m evaluation.column_fixes results/checkpoints/RUN/step-240-original --split train \\
        --out results/column-fixes/held-out/epoch-step-240-original
    python -m evaluation.column_fixes results/tuning/RUN-best-of-8-train-held-out --split train --first 4 \\
        --out results/column-fixes/held-out/best-of-4.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from text2sql.selection import Candidate, choose
from text2sql.sqlcheck import fix_column_names, fixes_note

POLICIES = ("as written", "where none ran as written", "voting beside the others")


def fixed_lines(predictions: list[dict], spider) -> list[dict]:
    """Each greedy prediction with its SQL put right (and the change in its warnings)."""
    schemas = {}
    lines = []
    for line in predictions:
        if line.get("candidates"):
            raise ValueError(f"Question {line['id']} has candidates: a best-of-k run (see compare_policies).")
        schema = schemas.setdefault(line["db_id"], spider.schema(line["db_id"]))
        sql, fixes = fix_column_names(line["prediction"], schema) if line["prediction"] else (line["prediction"], [])
        warnings = (line.get("warnings") or []) + ([fixes_note(fixes)] if fixes else [])
        # The line now says its SQL was put right, so the run's metrics aren't labelled "as written".
        lines.append({**line, "prediction": sql, "warnings": warnings, "fix_column_names": True})
    return lines


def policy_outcomes(spider, split: str, run: Path, first: int | None) -> dict[str, list[bool]]:
    """Whether each way of counting put-right candidates picks a right answer, per question."""
    from evaluation.execution import execution_match
    from evaluation.vote_rules import checked_lines, pooled_lines
    from text2sql.selection import most_likely_failure

    examples = {e.id: e for e in spider.examples(split)}
    outcomes: dict[str, list[bool]] = {policy: [] for policy in POLICIES}
    lines = pooled_lines([run], first)
    records = {line["id"]: candidates for line, candidates in lines}
    for line, candidates, _ in checked_lines(spider, lines, desc=run.name):
        db_id = line["db_id"]
        picks = {
            "as written": choose([c for c in candidates if not c.fixes]),  # a put-right one failed as written
            "where none ran as written": choose(candidates),
            "voting beside the others": choose([dataclasses.replace(c, fixes=[]) for c in candidates]),
        }
        repair = (line.get("repair") or {}).get("sql")
        written = most_likely_failure([Candidate.from_record(record) for record in records[line["id"]]]).sql
        failure = most_likely_failure(candidates).sql
        for policy, pick in picks.items():  # where nothing runs: the repair, else the likeliest failure as written
            sql = pick.sql if pick else repair or (written if policy == POLICIES[0] else failure)
            gold = examples[line["id"]].query
            outcomes[policy].append(bool(sql) and execution_match(spider.db_path(db_id), gold, sql).match)
    return outcomes


def compare_policies(spider, args) -> None:
    from evaluation.compare import paired_difference

    outcomes = policy_outcomes(spider, args.split, args.run, args.first)
    base = outcomes[POLICIES[0]]
    report = {"run": str(args.run), "first": args.first,
              "policies": {policy: paired_difference(base, right) for policy, right in outcomes.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for policy, r in report["policies"].items():
        print(f"{policy:28s} EX {100 * r['b']:.1f}  ({100 * r['difference']:+.1f}; +{r['b_only']} / -{r['a_only']}, "
              f"p = {r['p_value']:.2g})")


def main(argv: list[str] | None = None) -> None:
    from evaluation.compare import paired_difference
    from evaluation.score import read_predictions, score_to_folder
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a scored run folder (predictions.jsonl, scored.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="greedy: a run folder; best-of-k: a JSON file")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes")
    parser.add_argument("--first", type=int, default=None, help="best-of-k: only each question's first N candidates")
    args = parser.parse_args(argv)

    predictions = read_predictions(args.run / "predictions.jsonl")
    if predictions[0].get("candidates"):
        compare_policies(Spider(args.spider), args)
        return
    lines = fixed_lines(predictions, Spider(args.spider))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "predictions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    metrics = score_to_folder(path, args.out, args.spider, args.split, None, None, args.workers)

    before = {item["id"]: item for item in map(json.loads, (args.run / "scored.jsonl").read_text().splitlines())}
    after = {item["id"]: item for item in map(json.loads, (args.out / "scored.jsonl").read_text().splitlines())}
    ids = sorted(before)
    comparison = {
        "run": str(args.run),
        "changed": sum(a["prediction"] != b["prediction"] for a, b in zip(predictions, lines)),
        "ex": paired_difference([before[i]["ex"] for i in ids], [after[i]["ex"] for i in ids]),
        "valid_sql": paired_difference([before[i]["error"] is None for i in ids],
                                       [after[i]["error"] is None for i in ids]),
    }
    (args.out / "comparison.json").write_text(json.dumps(comparison, indent=1) + "\n")
    ex, valid = comparison["ex"], comparison["valid_sql"]
    print(f"{args.run}: {comparison['changed']} of {len(ids)} queries changed; "
          f"EX {100 * ex['a']:.1f} -> {100 * ex['b']:.1f} "
          f"(+{ex['b_only']} / -{ex['a_only']}, p = {ex['p_value']:.2g}); valid SQL {100 * valid['a']:.1f} -> "
          f"{100 * valid['b']:.1f}; metrics n = {metrics['n']}")


if __name__ == "__main__":
    main()
