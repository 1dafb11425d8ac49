"""Auto decoding measured on a best-of-K run's saved candidates, without the model.

Auto (``text2sql.selection``, ``--mode auto``) keeps the greedy answer when it passes the
checks and returns something, and otherwise answers by best of k. A best-of-K run keeps
every question's candidates in the order drawn, the greedy answer first, so auto with any
k <= K can be replayed from it: check the greedy answer (under the query time limit, as
auto does), decide whether it escalates, and where it does, vote among the first k
candidates (checked again under the candidate limit, as best-of-k does).

What can't be replayed without the model is the repair round (k repairs drawn where none of
the k candidates ran): those questions get the most likely failed candidate instead, what a
run answers without a repair, so the EX here is a lower bound for auto and for best of k
alike. Their count is reported. Both are scored by execution against gold
(``evaluation.execution``), and auto is compared with greedy and with best of k (paired,
exact McNemar): auto and best of k differ only where auto kept the greedy answer.

Cost: ``sequences`` counts what a question makes the model write: 1 greedy answer, plus k
candidates when it escalates (best of k writes the greedy answer again as its first; the
shared batch makes that one cheap), plus k repairs where none ran. Latency is not derived:
the runs record only each batch's mean time per question, and auto's time depends on which
questions of a batch escalate (``python -m benchmarks.auto_latency`` measures it).

    nice -n 10 python -m evaluation.auto_mode results/qwen2.5-coder-0.5b-spider-best-of-16-rows-first --k 4 8 \\
        --out results/auto-mode/auto_mode.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from text2sql.selection import Candidate


def replay(spider, gold: str, line: dict, ks: list[int], query_timeout_s: float) -> dict:
    """One question: whether greedy, best of k and auto (each k) answer it right, and what auto did."""
    from evaluation.execution import execution_match
    from text2sql.selection import check_candidates, choose, escalation_reason, most_likely_failure

    schema, sandbox = spider.schema(line["db_id"]), spider.sandbox(line["db_id"])
    db_path = spider.db_path(line["db_id"])
    verdicts: dict[str, bool] = {}

    def right(sql: str) -> bool:
        if sql not in verdicts:
            verdicts[sql] = bool(sql) and execution_match(db_path, gold, sql, query_timeout_s).match
        return verdicts[sql]

    greedy = Candidate.from_record(line["candidates"][0])
    check_candidates([greedy], schema, sandbox, has_data=True, timeout_s=query_timeout_s)
    reason = escalation_reason(greedy, has_data=True)
    candidates = [Candidate.from_record(record) for record in line["candidates"][: max(ks)]]
    check_candidates(candidates, schema, sandbox, has_data=True)
    outcome = {"id": line["id"], "escalation": reason, "greedy": right(greedy.sql)}
    for k in ks:
        first_k = candidates[:k]
        pick = choose(first_k)
        best = pick or most_likely_failure(first_k)  # no repair round: it needs the model
        outcome[f"best_of_{k}"] = right(best.sql)
        outcome[f"auto_{k}"] = right(greedy.sql if reason is None else best.sql)
        outcome[f"auto_{k}_unrepaired"] = reason is not None and pick is None
    return outcome


def summary(outcomes: list[dict], k: int) -> dict:
    """EX of greedy, best of k and auto; auto's cost; auto against greedy and against best of k."""
    from evaluation.compare import paired_difference

    n = len(outcomes)
    escalated = sum(o["escalation"] is not None for o in outcomes)
    unrepaired = sum(o[f"auto_{k}_unrepaired"] for o in outcomes)
    greedy, best, auto = ([o[key] for o in outcomes] for key in ("greedy", f"best_of_{k}", f"auto_{k}"))
    return {
        "k": k,
        "n": n,
        "ex": {"greedy": sum(greedy) / n, "best_of_k": sum(best) / n, "auto": sum(auto) / n},
        "escalated": escalated,
        "escalated_without_a_running_candidate": unrepaired,
        "mean_candidates_voted_on": (n - escalated + escalated * k) / n,
        "mean_sequences": (n + escalated * k + unrepaired * k) / n,
        "auto_vs_greedy": paired_difference(greedy, auto),
        "auto_vs_best_of_k": paired_difference(best, auto),
    }


def escalation_counts(outcomes: list[dict]) -> dict[str, int]:
    """How often each kind of reason sent a question to best of k."""
    kinds = ("failed", "returned no rows", "returned only NULLs", "had no SQL in it")
    counts = {kind: 0 for kind in ("kept", *kinds)}
    for outcome in outcomes:
        reason = outcome["escalation"]
        counts[next((kind for kind in kinds if reason and reason.startswith(kind)), "kept")] += 1
    return counts


def print_table(table: list[dict], counts: dict[str, int]) -> None:
    n = table[0]["n"]
    print(f"{n} questions; greedy answer kept for {counts['kept']}, escalated: "
          + ", ".join(f"{kind} {count}" for kind, count in counts.items() if kind != "kept"))
    print("| k | greedy EX % | best of k EX % | auto EX % | escalated | candidates voted on (mean) | sequences (mean) "
          "| auto - greedy (95% CI), p | auto - best of k (95% CI), p |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for row in table:
        versus = [row["auto_vs_greedy"], row["auto_vs_best_of_k"]]
        cells = [f"{100 * d['difference']:+.1f} ({100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f}), "
                 f"p = {d['p_value']:.2g}" for d in versus]
        print(f"| {row['k']} | {100 * row['ex']['greedy']:.1f} | {100 * row['ex']['best_of_k']:.1f} "
              f"| {100 * row['ex']['auto']:.1f} | {row['escalated']} ({100 * row['escalated'] / n:.1f}%) "
              f"| {row['mean_candidates_voted_on']:.2f} | {row['mean_sequences']:.2f} | {cells[0]} | {cells[1]} |")


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from evaluation.score import read_predictions
    from text2sql.settings import get_settings
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a best-of-K run folder (with predictions.jsonl)")
    parser.add_argument("--k", type=int, nargs="+", required=True, help="auto's k (each at most the run's K)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--out", type=Path, default=None, help="write the table and each question's outcome here (JSON)")
    args = parser.parse_args(argv)

    path = args.source / "predictions.jsonl"
    if not path.is_file():
        raise SystemExit(f"No predictions.jsonl in {args.source}.")
    lines = read_predictions(path)
    if any(not line.get("candidates") for line in lines):
        raise SystemExit("The source must be a best-of-k run (every line keeps its candidates).")
    most = min(len(line["candidates"]) for line in lines)
    if not all(2 <= k <= most for k in args.k):
        raise SystemExit(f"--k must be from 2 to {most} for this run.")
    spider = Spider(args.spider)
    gold = {example.id: example.query for example in spider.examples(args.split)}
    timeout = get_settings().query_timeout_s
    outcomes = [replay(spider, gold[line["id"]], line, args.k, timeout) for line in tqdm(lines, unit="q")]
    table = [summary(outcomes, k) for k in args.k]
    counts = escalation_counts(outcomes)
    print_table(table, counts)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"source": str(args.source), "split": args.split, "escalations": counts, "table": table,
                  "questions": outcomes}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
