"""Paired comparison of two scored runs: the difference in EX and EM with a McNemar test.

Both runs are read from their ``scored.jsonl`` (pass the run folder or the file) and
compared on the items both scored. For each metric: A's and B's rates, B - A, a 95%
interval for that paired difference, the discordant pairs (b: A right and B wrong, c: A
wrong and B right) and the exact two-sided McNemar p-value (a binomial test on b vs c). A
difference whose p-value is above 0.05 can't be told from noise on these items.

    python -m evaluation.compare results/qwen2.5-coder-0.5b-base results/qwen2.5-coder-0.5b-sft
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def read_scored(path: str | Path) -> dict[int, dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "scored.jsonl"
    return {item["id"]: item for item in map(json.loads, path.read_text().splitlines())}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(a Binomial(b + c, 1/2) split at least this uneven)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(a: list[bool], b: list[bool]) -> dict:
    """B - A on paired binary outcomes, with a 95% Wald interval and McNemar's test."""
    n = len(a)
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    difference = (only_b - only_a) / n
    spread = math.sqrt(max(0.0, (only_a + only_b) / n - difference**2) / n)
    return {
        "n": n,
        "a": sum(a) / n,
        "b": sum(b) / n,
        "difference": difference,
        "ci95": [difference - 1.96 * spread, difference + 1.96 * spread],
        "a_only": only_a,
        "b_only": only_b,
        "p_value": mcnemar_exact(only_a, only_b),
    }


def compare(run_a, run_b) -> dict[str, dict]:
    a, b = read_scored(run_a), read_scored(run_b)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("The two runs have no scored items in common.")
    return {
        metric: paired_difference([bool(a[i][metric]) for i in shared], [bool(b[i][metric]) for i in shared])
        for metric in ("ex", "em")
    }


def difference_cells(r: dict) -> str:
    """A ``paired_difference`` as Markdown cells: A %, B %, B - A, its 95% CI, A only, B only, p."""
    low, high = r["ci95"]
    return (
        f"{100 * r['a']:.1f} | {100 * r['b']:.1f} | {100 * r['difference']:+.1f} "
        f"| {100 * low:+.1f} to {100 * high:+.1f} | {r['a_only']} | {r['b_only']} | {r['p_value']:.3g}"
    )


def of_split(run) -> str:
    """The text " of <size of the run's split>", when the run folder's metrics.json names the split."""
    metrics = Path(run) / "metrics.json"
    if not metrics.is_file():
        return ""
    from text2sql.spider import Spider

    try:
        return f" of {len(Spider().examples(json.loads(metrics.read_text())['split']))}"
    except (OSError, KeyError, ValueError):
        return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="run folder (or its scored.jsonl): the baseline")
    parser.add_argument("b", help="run folder (or its scored.jsonl): the candidate")
    args = parser.parse_args(argv)
    results = compare(args.a, args.b)
    n = results["ex"]["n"]
    print(f"A = {args.a}\nB = {args.b}\npaired on the items scored in both: n = {n}{of_split(args.a)}\n")
    print("| metric | A % | B % | B - A (points) | 95% CI | A only | B only | McNemar p |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for metric, r in results.items():
        print(f"| {metric.upper()} | {difference_cells(r)} |")
    verdicts = [
        f"{m.upper()}: {'a measurable change' if r['p_value'] < 0.05 else 'no measurable change'} (p = {r['p_value']:.3g})"
        for m, r in results.items()
    ]
    print("\n" + "; ".join(verdicts))


if __name__ == "__main__":
    main()
