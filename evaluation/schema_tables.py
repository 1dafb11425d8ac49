"""What showing the prompt only the question's likeliest tables keeps, saves and costs.

Setting ``schema_tables`` (``evaluate --schema-tables N``) cuts each prompt's schema to the N
tables ``text2sql.prompt.likely_tables`` ranks first for its question. Without a model but
its tokenizer, for each N this counts, over a split's questions that have a database:

* *changed*: questions whose database has more than N tables (the others see the whole schema);
* *gold kept*: questions whose prompt still shows every table the gold query reads (sqlglot),
  over all questions and over the changed ones: a lost table is an answer the model can't write;
* *prompt tokens*: the mean prompt length, whole schema against cut, over the changed questions
  (what a question about a new database must prefill), each fitted to the model's prompt budget
  as the pipeline does (``fit_schema``: a long schema loses example values first).

With ``--runs WHOLE CUT`` (two ``evaluate`` runs of one model, the second with
``--schema-tables N``) it also pairs their EX on the questions both
answered (exact McNemar, ``evaluation.compare``), split by whether the cut kept the gold
tables, and compares their generation time per question (``latency_ms``: a batch's time over
its size), where the cut prompts lose most of the per-database prefix reuse. When the cut run
answered only the questions it changes (``evaluate --databases``: those of databases with more
than N tables), *whole run, cut answers* is the whole run's EX with the cut run's answers where
it has them: the other questions' prompts are the same text in both settings.

    python -m evaluation.schema_tables --model qwen2.5-coder-1.5b --tables 1 2 3 4 \\
        --runs results/qwen2.5-coder-1.5b-base-threads-2-quiet results/qwen2.5-coder-1.5b-base-schema-tables-3 \\
        --out results/schema-tables/schema_tables.json
    python -m evaluation.schema_tables --model qwen2.5-coder-1.5b --tables 3 --split train \
        --databases cre_Drama_Workshop_Groups,insurance_policies,student_assessment,tracking_orders \
        --runs results/schema-tables/held-out-qwen2.5-coder-1.5b-whole results/schema-tables/held-out-qwen2.5-coder-1.5b-3-tables \
        --out results/schema-tables/held_out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def gold_tables(sql: str, table_names: list[str]) -> set[str]:
    """The schema's tables (lower case) that ``sql`` reads."""
    import sqlglot
    from sqlglot import exp

    known = {name.lower() for name in table_names}
    return {table.name.lower() for table in sqlglot.parse_one(sql, read="sqlite").find_all(exp.Table)} & known


def shown_tables(schema, question: str, n: int) -> set[str]:
    from text2sql.prompt import likely_tables

    return {name.lower() for name in likely_tables(schema, question, n)[0].table_names()}


def coverage(examples: list, spider, generator, n: int) -> dict:
    """Gold tables kept and prompt tokens for ``likely_tables(.., n)`` over ``examples``; both
    prompts are fitted to ``generator``'s budget as the pipeline fits them (``fit_schema``)."""
    from text2sql.prompt import build_messages, fit_schema, likely_tables

    def prompt_tokens(schema, question: str) -> int:
        fitted, _ = fit_schema(schema, question, generator.count_tokens, generator.max_prompt_tokens)
        return generator.count_tokens(build_messages(fitted, question))

    kept = kept_changed = 0
    whole_tokens, cut_tokens = [], []
    for example in examples:
        schema = spider.schema(example.db_id)
        gold = gold_tables(example.query, schema.table_names())
        cut, _ = likely_tables(schema, example.question, n)
        has_gold = gold <= {name.lower() for name in cut.table_names()}
        kept += has_gold
        if len(cut.tables) < len(schema.tables):
            kept_changed += has_gold
            whole_tokens.append(prompt_tokens(schema, example.question))
            cut_tokens.append(prompt_tokens(cut, example.question))
    changed = len(whole_tokens)
    return {
        "tables": n,
        "questions": len(examples),
        "changed": changed,
        "gold_kept": kept,
        "gold_kept_changed": kept_changed,
        "prompt_tokens_whole": round(statistics.mean(whole_tokens), 1) if changed else None,
        "prompt_tokens_cut": round(statistics.mean(cut_tokens), 1) if changed else None,
    }


def read_lines(run: Path) -> dict[int, dict]:
    from evaluation.score import read_predictions

    return {line["id"]: line for line in read_predictions(run / "predictions.jsonl")}


def paired_runs(whole: Path, cut: Path, examples: list, spider) -> dict:
    """EX of the two runs on the questions both scored, overall and by whether the gold tables were kept."""
    from evaluation.compare import paired_difference, read_scored
    from evaluation.report import recorded_settings

    a, b = read_scored(whole), read_scored(cut)
    lines = read_lines(cut)
    n = recorded_settings(list(lines.values())).get("schema_tables")
    if not n:
        raise SystemExit(f"{cut} was not made with evaluate --schema-tables.")
    by_id = {e.id: e for e in examples}
    shared = sorted(set(a) & set(b) & set(by_id))
    kept = {
        i: gold_tables(by_id[i].query, spider.schema(by_id[i].db_id).table_names())
        <= shown_tables(spider.schema(by_id[i].db_id), by_id[i].question, n)
        for i in shared
    }
    groups = {"all": shared, "gold kept": [i for i in shared if kept[i]], "gold lost": [i for i in shared if not kept[i]]}
    whole_ms, cut_ms = read_lines(whole), lines
    spliced = [bool((b[i] if i in b else a[i])["ex"]) for i in a]
    return {
        "whole": str(whole),
        "cut": str(cut),
        "tables": n,
        "ex": {
            name: paired_difference([bool(a[i]["ex"]) for i in ids], [bool(b[i]["ex"]) for i in ids])
            for name, ids in groups.items() if ids
        },
        "whole_run_cut_answers": {"n": len(spliced), "ex": round(sum(spliced) / len(spliced), 6)},
        "latency_ms_mean": {
            "whole": round(statistics.mean(whole_ms[i]["latency_ms"] for i in shared), 1),
            "cut": round(statistics.mean(cut_ms[i]["latency_ms"] for i in shared), 1),
        },
        "prompt_tokens_mean": {
            "whole": round(statistics.mean(whole_ms[i]["prompt_tokens"] for i in shared), 1),
            "cut": round(statistics.mean(cut_ms[i]["prompt_tokens"] for i in shared), 1),
        },
    }


def _share(count: int, of: int) -> str:
    return f"{100 * count / max(1, of):.1f}% ({count} of {of})"


def print_coverage(rows: list[dict]) -> None:
    print("| tables shown | questions changed | gold tables kept (all) | gold tables kept (changed) | prompt tokens, whole -> cut (changed) |")
    print("|---:|---:|---:|---:|---|")
    for r in rows:
        tokens = f"{r['prompt_tokens_whole']} -> {r['prompt_tokens_cut']}" if r["changed"] else "-"
        print(
            f"| {r['tables']} | {r['changed']} | {_share(r['gold_kept'], r['questions'])} | "
            f"{_share(r['gold_kept_changed'], r['changed'])} | {tokens} |"
        )


def print_pairing(pairing: dict) -> None:
    from evaluation.compare import difference_cells

    print(f"\nEX, {pairing['whole']} (A, whole schema) against {pairing['cut']} (B, {pairing['tables']} tables):")
    print("| questions | n | A EX % | B EX % | B - A (points) | 95% CI | A only | B only | McNemar p |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, d in pairing["ex"].items():
        print(f"| {name} | {d['n']} | {difference_cells(d)} |")
    spliced = pairing["whole_run_cut_answers"]
    print(f"\nwhole run, cut answers: EX {100 * spliced['ex']:.1f}% of {spliced['n']}")
    ms, tokens = pairing["latency_ms_mean"], pairing["prompt_tokens_mean"]
    ratio = f" ({ms['cut'] / ms['whole']:.2f}x)" if ms["whole"] else ""
    print(
        f"\nmean prompt tokens {tokens['whole']} -> {tokens['cut']}; "
        f"mean generation time per question {ms['whole']:.0f} ms -> {ms['cut']:.0f} ms{ratio}"
    )


def main(argv: list[str] | None = None) -> None:
    from evaluation.evaluate import parse_databases
    from text2sql.engine import load_generator
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registry model whose tokenizer counts the prompt tokens")
    parser.add_argument("--tables", type=int, nargs="+", required=True, help="numbers of tables shown (each >= 1)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--databases", default=None, help="only questions about these databases (comma-separated db_ids)")
    parser.add_argument("--runs", type=Path, nargs=2, metavar=("WHOLE", "CUT"), help="two evaluate runs to pair")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    if min(args.tables) < 1:
        raise SystemExit("--tables: each number of tables shown must be at least 1.")
    spider = Spider(args.spider)
    examples = [e for e in spider.examples(args.split) if spider.has_database(e.db_id)]
    if args.databases:
        wanted = parse_databases(spider, args.databases)
        examples = [e for e in examples if e.db_id in wanted]
        if not examples:
            raise SystemExit(f"--databases: no {args.split} question is about {', '.join(sorted(wanted))}.")
    generator = load_generator(args.model)
    rows = [coverage(examples, spider, generator, n) for n in args.tables]
    about = f" about {args.databases}" if args.databases else ""
    print(f"{args.split}: {len(examples)} questions with a database{about}; tokens counted by {args.model}'s tokenizer\n")
    print_coverage(rows)
    report = {"model": args.model, "split": args.split, "databases": args.databases, "coverage": rows}
    if args.runs:
        report["runs"] = paired_runs(*args.runs, examples, spider)
        print_pairing(report["runs"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
