"""Evaluation on Spider: execution accuracy, exact match, chatty rate, per hardness, with 95% CIs.

    python -m evaluation.evaluate --model qwen2.5-coder-0.5b --split dev --out results/qwen2.5-coder-0.5b-base
    python -m evaluation.score --predictions results/RUN/predictions.jsonl
    python -m evaluation.compare results/RUN_A results/RUN_B
    python -m evaluation.leaderboard --markdown

See docs/evaluation.md for what each number means and how it relates to the official scripts.
"""

EVALUATOR_VERSION = (
    "text2sql-eval/1: EX = test-suite exec match on the single DB (keep_distinct, no plug_value); "
    "EM = Spider exact set match on sqlglot"
)
