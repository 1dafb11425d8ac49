"""Print the leaderboard of every run under ``results/`` and save its chart.

A thin command line over ``text2sql.leaderboard`` (the same table and chart the app's
Compare tab shows): one row per ``results/<run>/metrics.json``, best EX first.

    python -m evaluation.leaderboard [--results results] [--markdown] [--chart results/leaderboard.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from text2sql.leaderboard import leaderboard_chart, leaderboard_table, load_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="folder holding one sub-folder per run")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for README/docs)")
    parser.add_argument("--chart", default=None, help="where to save the chart (default: RESULTS/leaderboard.png)")
    args = parser.parse_args(argv)

    results = load_results(args.results)
    if not results:
        raise SystemExit(f"No runs found: no {args.results}/*/metrics.json.")
    table = leaderboard_table(results)
    shown = table.astype(object).where(table.notna(), "")  # a run without a figure shows a blank, not nan
    print(shown.to_markdown(index=False) if args.markdown else shown.to_string(index=False))
    chart = Path(args.chart or Path(args.results) / "leaderboard.png")
    leaderboard_chart(results).savefig(chart, dpi=120)
    print(f"\nchart: {chart}")


if __name__ == "__main__":
    main()
