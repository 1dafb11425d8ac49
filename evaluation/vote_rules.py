"""Compare best-of-k vote rules on saved candidates, against gold, without the model.

Each question's candidates are read from one or more best-of-k runs over the same questions
(pooled in the order given: e.g. a fine-tuned run's and a base run's; ``--per-run N`` keeps
each run's first N, the greedy answer and N - 1 draws), checked in the sandbox
again, grouped by equal results, and each rule in ``RULES`` picks a group; the group's most
likely candidate is the answer. Where no candidate ran, the first run's repair stands for
every rule (else the likeliest failed candidate: what a run answers without a repair; a
``--per-run`` subset whose candidates all fail gets no repair here, though a run of its own
would have had one). Each pick is scored by execution against gold
(``evaluation.execution``), and every rule is compared with the first one (paired, McNemar).
"any candidate" is the ceiling: some candidate is right (or, where none ran, the repair).

Tune on questions no reported figure uses (the databases a training run held out: see its
train.log), then apply the chosen rule once to dev.

    python -m evaluation.vote_rules results/tuning/RUN [results/tuning/OTHER_RUN] --split train \\
        --out results/tuning/RUN/vote_rules.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

from text2sql.schema import Schema
from text2sql.selection import Candidate, answers_something, vote_rank

Group = list[Candidate]


def _likeliest(group: Group) -> float:
    return max(c.logprob for c in group)


def _probability(group: Group) -> float:
    return sum(math.exp(c.logprob) for c in group)


RULES: dict[str, Callable[[Group], tuple]] = {
    # The most votes; ties to the group with the likeliest candidate (text2sql.selection.choose until 2026-11-26).
    "votes": lambda group: (len(group), _likeliest(group)),
    # Each vote weighted by the candidate's probability under the model.
    "probability": lambda group: (_probability(group),),
    # The most votes among results that answer something; empty and all-NULL results only if nothing else ran
    # (text2sql.selection.choose since 2026-11-26, chosen with this comparison).
    "votes, non-empty first": vote_rank,
    "probability, non-empty first": lambda group: (answers_something(group[0].result), _probability(group)),
}


def pooled_lines(runs: list[Path], first: int | None = None) -> list[tuple[dict, list[dict]]]:
    """(first run's line, candidate records of every run: the first ``first`` of each, or
    all) for the questions all runs answered."""
    from evaluation.score import read_predictions

    missing = [str(run) for run in runs if not (run / "predictions.jsonl").is_file()]
    if missing:
        raise SystemExit(f"No predictions.jsonl in: {', '.join(missing)}")
    if first is not None and first < 1:
        raise SystemExit(f"--per-run must be at least 1, not {first}.")
    by_run = [{line["id"]: line for line in read_predictions(run / "predictions.jsonl")} for run in runs]
    shared = sorted(set.intersection(*(set(lines) for lines in by_run)))
    if not shared:
        raise SystemExit("The runs have no questions in common.")
    for lines in by_run:
        if any("candidates" not in lines[i] for i in shared):
            raise SystemExit("Every run must be a best-of-k run (its lines keep their candidates).")
    return [(by_run[0][i], [c for lines in by_run for c in lines[i]["candidates"][:first]]) for i in shared]


def checked_lines(
    spider, lines: list[tuple[dict, list[dict]]], desc: str = "checking"
) -> Iterator[tuple[dict, list[Candidate], Schema]]:
    """Each question of ``pooled_lines`` with its candidates checked in the sandbox again (and
    put right, as the pipeline does) and its database's schema; each database's schema and
    sandbox are opened once; a progress bar."""
    from tqdm import tqdm

    from text2sql.selection import check_candidates

    databases = {}
    for line, records in tqdm(lines, desc=desc, unit="q"):
        db_id = line["db_id"]
        if db_id not in databases:
            databases[db_id] = (spider.schema(db_id), spider.sandbox(db_id))
        schema, sandbox = databases[db_id]
        candidates = [Candidate.from_record(record) for record in records]
        check_candidates(candidates, schema, sandbox, has_data=True)
        yield line, candidates, schema


def question_outcomes(spider, gold: str, line: dict, candidates: list[Candidate]) -> dict:
    """Whether each rule's pick among the checked ``candidates``, and any candidate, is right for one question."""
    from evaluation.execution import execution_match
    from text2sql.selection import choose, most_likely_failure

    db_path = spider.db_path(line["db_id"])
    verdicts: dict[str, bool] = {}

    def right(sql: str) -> bool:
        if sql not in verdicts:
            verdicts[sql] = bool(sql) and execution_match(db_path, gold, sql).match
        return verdicts[sql]

    fallback = (line["repair"] or {}).get("sql") or most_likely_failure(candidates).sql
    picks = {name: choose(candidates, rank) for name, rank in RULES.items()}
    ran = any(c.ran for c in candidates)
    outcome = {"id": line["id"], "ran": ran}
    outcome.update({name: right(pick.sql if pick else fallback) for name, pick in picks.items()})
    outcome["any candidate"] = any(right(sql) for sql in {c.sql for c in candidates}) or (not ran and right(fallback))
    return outcome


def summary(outcomes: list[dict]) -> dict[str, dict]:
    """Each rule's EX, and its paired difference from the first rule's."""
    from evaluation.compare import paired_difference

    first = [o[next(iter(RULES))] for o in outcomes]
    table = {}
    for name in [*RULES, "any candidate"]:
        right = [o[name] for o in outcomes]
        table[name] = {"ex": sum(right) / len(right), **paired_difference(first, right)}
    return table


def main(argv: list[str] | None = None) -> None:
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="best-of-k run folders (with predictions.jsonl)")
    parser.add_argument("--split", default="dev", help="the split the runs answered")
    parser.add_argument("--per-run", type=int, default=None, help="pool only each run's first N candidates")
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--out", type=Path, default=None, help="write the table and each question's outcomes here (JSON)")
    args = parser.parse_args(argv)

    spider = Spider(args.spider)
    gold = {example.id: example.query for example in spider.examples(args.split)}
    lines = pooled_lines(args.runs, args.per_run)
    outcomes = [question_outcomes(spider, gold[line["id"]], line, candidates)
                for line, candidates, _ in checked_lines(spider, lines)]
    table = summary(outcomes)
    ran = sum(o["ran"] for o in outcomes)
    print(f"{len(outcomes)} questions, {len(lines[0][1])} candidates each, some candidate ran for {ran}")
    print(f"{'rule':32} {'EX':>6} {'vs ' + next(iter(RULES)):>12} {'p':>8}")
    for name, row in table.items():
        print(f"{name:32} {100 * row['ex']:6.1f} {100 * row['difference']:+12.1f} {row['p_value']:8.3g}")
    if args.out:
        record = {"runs": [str(run) for run in args.runs], "split": args.split, "rules": table, "questions": outcomes}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
