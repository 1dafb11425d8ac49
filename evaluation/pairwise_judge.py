"""Would the model itself choose better than the vote between the two leading answers?
(issue 21, item 3: a second stage after the vote, kept only if it pays for its time.)

On saved best-of-k candidates of questions no reported figure uses (the held-out train
databases' runs in ``results/tuning/``): each question's candidates are checked in the sandbox
again and grouped by equal results as ``text2sql.selection`` groups them. Where the vote's
group has a runner-up that answers something (rows, not only NULLs), a judge model is shown
the question's prompt (schema and question, as the model was asked) and both groups' likeliest
queries with their first rows, and asked which answers the question (reply "A" or "B"). It is
asked in both orders, and its verdict is the log-odds of the runner-up's letter over the pick's
(the log-probabilities of the reply's first token, ``next_token_logprobs``) summed over the two
orders, which cancels the judge's preference for a position; the answer changes to the
runner-up where that sum is above 0 (fixed, not tuned). Each answer is scored against gold by
execution (``evaluation.execution``), paired with the vote (McNemar); the judge's time is
measured per judged question. The judge runs on the llama.cpp backend (the one with
``next_token_logprobs``).

    python -m evaluation.pairwise_judge results/tuning/qwen2.5-coder-0.5b-spider-best-of-8-train-held-out \\
        --split train --model qwen2.5-coder-1.5b --threads 2 --out results/tuning/pairwise_judge_1.5b.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from text2sql.prompt import Messages, user_message
from text2sql.sandbox import QueryResult
from text2sql.schema import Schema
from text2sql.selection import Candidate, answers_something, result_groups, vote_rank

JUDGE_SYSTEM_PROMPT = (
    "You are a SQLite expert. Given a database schema, a question and two SQLite queries that "
    "return different results, say which query answers the question correctly."
)
JUDGE_REQUEST = (
    "Query A:\n{a}\nResult of A{a_rows}:\n{a_table}\n\n"
    "Query B:\n{b}\nResult of B{b_rows}:\n{b_table}\n\n"
    "Which query answers the question correctly? Reply with one letter: A or B."
)
SHOWN_ROWS = 5
SHOWN_CHARS = 40


def result_table(result: QueryResult) -> tuple[str, str]:
    """(" (N rows, first 5 shown)" or similar, the header and first rows as pipe-separated lines)."""
    def cell(value) -> str:
        text = "NULL" if value is None else str(value)
        return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."

    rows = result.rows
    shown = f", first {SHOWN_ROWS} shown" if len(rows) > SHOWN_ROWS else ""
    note = f" ({len(rows)} row{'s' * (len(rows) != 1)}{shown})"
    lines = [" | ".join(result.columns)] + [" | ".join(cell(v) for v in row) for row in rows[:SHOWN_ROWS]]
    return note, "\n".join(lines)


def judge_messages(schema: Schema, question: str, a: Candidate, b: Candidate) -> Messages:
    """The question's prompt (its schema first, so every question about one database shares the
    prefix) followed by both queries and their results."""
    a_rows, a_table = result_table(a.result)
    b_rows, b_table = result_table(b.result)
    request = JUDGE_REQUEST.format(a=a.sql, a_rows=a_rows, a_table=a_table, b=b.sql, b_rows=b_rows, b_table=b_table)
    return [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": f"{user_message(schema, question)}\n\n{request}"},
    ]


def leading_two(candidates: list[Candidate]) -> tuple[Candidate, Candidate | None]:
    """The likeliest candidate of the vote's group and of the runner-up that answers something
    (None when there is none)."""
    groups = sorted(result_groups(candidates), key=vote_rank, reverse=True)
    picks = [max(group, key=lambda c: c.logprob) for group in groups]
    runner_up = picks[1] if len(picks) > 1 and answers_something(picks[1].result) else None
    return picks[0], runner_up


def judged_questions(spider, split: str, run: Path, generator) -> list[dict]:
    """One row per question of ``run`` that has a runner-up: whether the vote's pick and the
    runner-up are right, the judge's log-probabilities of "A" and "B" with the pick shown
    first and with the runner-up shown first, and its seconds."""
    from evaluation.execution import execution_match
    from evaluation.vote_rules import checked_lines, pooled_lines

    examples = {e.id: e for e in spider.examples(split)}
    lines = sorted(pooled_lines([run]), key=lambda pair: pair[0]["db_id"])  # one database's prefix at a time
    rows = []
    for line, candidates, schema in checked_lines(spider, lines, desc="judging"):
        if not any(c.ran for c in candidates):
            continue
        pick, runner_up = leading_two(candidates)
        if runner_up is None:
            continue
        db_id = line["db_id"]
        start = time.perf_counter()
        pick_first, runner_up_first = generator.next_token_logprobs(
            [judge_messages(schema, line["question"], pick, runner_up),
             judge_messages(schema, line["question"], runner_up, pick)], ["A", "B"])
        gold, db_path = examples[line["id"]].query, spider.db_path(db_id)
        rows.append({
            "id": line["id"], "db_id": db_id,
            "vote_right": execution_match(db_path, gold, pick.sql).match,
            "runner_up_right": execution_match(db_path, gold, runner_up.sql).match,
            "pick_first": [round(x, 4) for x in pick_first], "runner_up_first": [round(x, 4) for x in runner_up_first],
            "seconds": round(time.perf_counter() - start, 3),
        })
    return rows


def runner_up_log_odds(row: dict) -> float:
    """The judge's preference for the runner-up over the pick, position bias cancelled."""
    (a_pick, b_runner_up), (a_runner_up, b_pick) = row["pick_first"], row["runner_up_first"]
    return (b_runner_up - a_pick) + (a_runner_up - b_pick)


def prefers_runner_up(row: dict) -> bool:
    return runner_up_log_odds(row) > 0


def summary(rows: list[dict], vote_by_id: dict[int, bool]) -> dict:
    """The judge against the vote on every question of the run (``vote_by_id``: whether the
    vote, or where nothing ran the repair, is right); only the judged ones can differ."""
    from evaluation.compare import paired_difference

    changed = {r["id"]: r["runner_up_right"] for r in rows if prefers_runner_up(r)}
    vote = list(vote_by_id.values())
    judged = [changed.get(id_, right) for id_, right in vote_by_id.items()]
    decisive = [r for r in rows if r["vote_right"] != r["runner_up_right"]]

    def shown_first_wins(order: str) -> int:
        return sum(r[order][0] > r[order][1] for r in rows)

    seconds = sorted(r["seconds"] for r in rows)
    return {
        "judged": len(rows),
        "decisive": len(decisive),
        "runner_up_chosen": sum(map(prefers_runner_up, rows)),
        "judge_right_on_decisive": sum(prefers_runner_up(r) == r["runner_up_right"] for r in decisive),
        "a_likelier_than_b": {"pick shown first": shown_first_wins("pick_first"),
                              "runner-up shown first": shown_first_wins("runner_up_first")},
        "vote_vs_judge": paired_difference(vote, judged),
        "seconds_per_judged_question": {"p50": seconds[len(seconds) // 2], "mean": sum(seconds) / len(seconds)}
        if seconds else None,
    }


def main(argv: list[str] | None = None) -> None:
    import os

    from evaluation.fit_selector import labelled_questions, vote_right
    from text2sql import cpu
    from text2sql.engine import load_generator
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a best-of-k run (its predictions.jsonl holds the candidates)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", required=True, help="the judge: a registry name")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the rows and the summary (JSON)")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["TEXT2SQL_THREADS"] = str(args.threads)

    spider = Spider(args.spider)
    questions = labelled_questions(spider, args.split, args.run)
    vote_by_id = {q.id: right for q, right in zip(questions, vote_right(questions))}
    generator = load_generator(args.model)
    if not hasattr(generator, "next_token_logprobs"):
        parser.error(f"{args.model} does not run on llama.cpp; the judge needs its next_token_logprobs.")
    rows = judged_questions(spider, args.split, args.run, generator)
    report = {"run": args.run.name, "judge": args.model, "threads": args.threads, "cpu": cpu.describe(),
              "summary": summary(rows, vote_by_id), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
