"""metrics.json, report.md and chart.png for one scored run (used by ``evaluation.score``).

Rates are fractions in [0, 1] with 95% Wilson intervals; ``n`` is the number of scored items
(dev items whose database exists), and every report says "n = <scored> of <split size>".
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from pathlib import Path

import numpy

from evaluation import EVALUATOR_VERSION
from text2sql.hardness import LEVELS
from text2sql.leaderboard import wilson_interval
from text2sql.settings import RUN_SETTINGS, Settings


KNOWN_EM_DIFFERENCES = """\
EM is Spider's exact set match re-implemented on sqlglot, not the official parser. Where
they can differ:

* NOT placement: sqlglot reads `NOT a IN (...)` and `a NOT IN (...)` alike; Spider's parser
  refuses the first. Both count as a negated condition here.
* Tokenisation corners of the official script (NLTK tokens, every `'` turned into `"`,
  quotes inside strings) are not reproduced: a string containing a quote parses here and may
  fail there.
* Table aliases without AS, column aliases, IS NULL, IN lists, LEFT/INNER JOIN, functions
  other than the five aggregates, CASE, CAST, `<>`, parenthesised conditions and WITH are
  refused, as by Spider's parser; other constructs its parser would refuse in ways sqlglot
  hides could still slip through.
* Where the official script would crash (two subqueries in one FROM), this one compares them.
"""


def rate_with_ci(hits: list[bool]) -> tuple[float, list[float]]:
    n = len(hits)
    rate = sum(hits) / n if n else 0.0
    low, high = wilson_interval(rate, n)
    return round(rate, 6), [round(low, 6), round(high, 6)]


def _latency(items: list[dict]) -> dict:
    values = [i["latency_ms"] for i in items if i.get("latency_ms") is not None]
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(float(numpy.percentile(values, 50)), 1), "p95": round(float(numpy.percentile(values, 95)), 1)}


def run_decoding(predictions: list[dict]) -> dict | None:
    """How the predictions were made (``evaluate`` records it on every line); None when no
    line says. Lines that disagree are an error: one run, one decoding."""
    recorded = {json.dumps(p["decoding"], sort_keys=True) for p in predictions if p.get("decoding")}
    if len(recorded) > 1:
        raise ValueError(f"The predictions were made with different decodings: {sorted(recorded)}")
    return json.loads(recorded.pop()) if recorded else None


def run_cpu(predictions: list[dict]) -> dict[str, int] | None:
    """The CPU kinds the predictions were made on (``text2sql.cpu.kind``, on every line since
    2026-11-30) and how many lines each; None when no line says. A run resumed on another kind
    of machine has more than one, and its latencies mix both."""
    kinds = Counter(p["cpu"] for p in predictions if p.get("cpu"))
    return dict(sorted(kinds.items())) or None


def run_engine(predictions: list[dict]) -> str | None:
    """Which backend made the predictions and how (``evaluate`` records it on every line):
    the distinct descriptions, in order, joined by " | " (a run resumed elsewhere has two)."""
    engines = dict.fromkeys(p["engine"] for p in predictions if p.get("engine"))
    return " | ".join(engines) or None


def recorded_settings(predictions: list[dict]) -> dict:
    """The ``RUN_SETTINGS`` the predictions were made with where not at their default
    (``evaluate --schema-tables``, ``--no-column-fixes``); lines that disagree are an error."""
    recorded = {}
    for name in RUN_SETTINGS:
        values = {p.get(name, getattr(Settings, name)) for p in predictions}
        if len(values) > 1:
            raise ValueError(f"The predictions were made with different {name}: {sorted(values, key=str)}")
        if values and (value := values.pop()) != getattr(Settings, name):
            recorded[name] = value
    return recorded


def _prompt_rows(metrics: dict) -> list[str]:
    rows = []
    if metrics.get("schema_tables"):
        rows.append(f"| schema in the prompt | the {metrics['schema_tables']} tables most related to each question |")
    if metrics.get("fix_column_names") is False:
        rows.append("| column names | as the model wrote them (not put right) |")
    return rows


def selection_summary(predictions: list[dict]) -> dict | None:
    """Best-of-k runs: the selection rule (null for runs made before it was recorded: the vote),
    how many candidates ran, and how often the repair round was needed and worked."""
    picked = [p for p in predictions if p.get("candidates") is not None]
    if not picked:
        return None
    candidates = [c for p in picked for c in p["candidates"]]
    repairs = [p["repair"] for p in picked if p.get("repair")]
    return {
        "rule": next((p["selection_rule"] for p in picked if p.get("selection_rule")), None),
        "candidates_ran_rate": round(sum(c["error"] is None for c in candidates) / max(1, len(candidates)), 6),
        "questions_without_a_running_candidate": len(repairs),
        "repairs_that_ran": sum(r["error"] is None for r in repairs),
    }


def build_metrics(items: list[dict], model: str, split: str, predictions: list[dict] = ()) -> dict:
    ex, ex_ci = rate_with_ci([i["ex"] for i in items])
    em, em_ci = rate_with_ci([i["em"] for i in items])
    chatty = [i["chatty"] for i in items if i["chatty"] is not None]
    per_hardness = {}
    for level in LEVELS:
        bucket = [i for i in items if i["hardness"] == level]
        per_hardness[level] = {
            "n": len(bucket),
            "ex": rate_with_ci([i["ex"] for i in bucket])[0],
            "em": rate_with_ci([i["em"] for i in bucket])[0],
        }
    return {
        "n": len(items),
        "ex": ex,
        "em": em,
        "chatty_rate": round(sum(chatty) / len(chatty), 6) if chatty else None,
        "valid_sql_rate": rate_with_ci([i["executed"] for i in items])[0],
        "ex_ci95": ex_ci,
        "em_ci95": em_ci,
        "per_hardness": per_hardness,
        "latency_ms": _latency(items),
        "model": model,
        "split": split,
        "decoding": run_decoding(list(predictions)),
        "cpu": run_cpu(list(predictions)),
        "engine": run_engine(list(predictions)),
        "selection": _with_coverage(selection_summary(list(predictions)), items),
        "evaluator_version": EVALUATOR_VERSION,
        **recorded_settings(list(predictions)),
    }


def _with_coverage(selection: dict | None, items: list[dict]) -> dict | None:
    """Adds ``any_candidate_ex``: the share of scored questions where a candidate (or the
    repaired query) was right, the ceiling for the vote."""
    covered = [i["any_candidate_ex"] for i in items if i.get("any_candidate_ex") is not None]
    if selection is None or not covered:
        return selection
    return {**selection, "any_candidate_ex": round(sum(covered) / len(covered), 6)}


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f}"


def _number(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _ci(hits: list[bool]) -> str:
    _, (low, high) = rate_with_ci(hits)
    return f"{100 * low:.1f}–{100 * high:.1f}"


def _id_ranges(ids: list[int]) -> str:
    ranges, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            ranges.append(str(start) if start == value else f"{start}–{value}")
            start = None
    return ", ".join(ranges)


def report_markdown(metrics: dict, items: list[dict], context: dict, predictions_path) -> str:
    n, total = metrics["n"], context["total"]
    rows = [("all", items)] + [(level, [i for i in items if i["hardness"] == level]) for level in LEVELS]
    chatty = [i["chatty"] for i in items if i["chatty"] is not None]
    timeouts = sum(1 for i in items if (i["error"] or "").startswith("Stopped"))
    em_refused = sum(1 for i in items if i["em_problem"])
    lines = [
        f"# {metrics['model']} on Spider {metrics['split']}",
        "",
        (
            f"**n = {n} of {total}** ({len(context['missing_db_ids'])} items excluded because their database is "
            f"missing: {', '.join(context['missing_dbs']) or 'none'}"
            + (
                f"; {context['not_predicted']} items with a database have no prediction"
                if context["not_predicted"]
                else ""
            )
            + ")."
        ),
        "",
        (
            f"Predictions: `{predictions_path}`. Scored {datetime.date.today().isoformat()} by "
            f"`python -m evaluation.score` ({metrics['evaluator_version']})."
        ),
        "",
        "| | n | EX % | EX 95% CI | EM % | EM 95% CI |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, bucket in rows:
        ex_hits, em_hits = [i["ex"] for i in bucket], [i["em"] for i in bucket]
        lines.append(
            f"| {name} | {len(bucket)} | {_pct(rate_with_ci(ex_hits)[0])} | {_ci(ex_hits)} "
            f"| {_pct(rate_with_ci(em_hits)[0])} | {_ci(em_hits)} |"
        )
    lines += [
        "",
        "| | value |",
        "|---|---:|",
        f"| chatty outputs (not bare SQL) | {_pct(metrics['chatty_rate'])}% ({sum(chatty)} of {len(chatty)}) |",
        f"| valid SQL (prediction ran without error) | {_pct(metrics['valid_sql_rate'])}% |",
        f"| predictions stopped by the time limit | {timeouts} |",
        f"| predictions outside Spider's SQL subset (EM 0 by rule) | {em_refused} |",
        "| generation latency per question, p50 / p95 (ms) "
        f"| {_number(metrics['latency_ms']['p50'])} / {_number(metrics['latency_ms']['p95'])} |",
        f"| decoding | {_decoding_text(metrics.get('decoding'), (metrics.get('selection') or {}).get('rule'))} |",
        *_selection_rows(metrics.get("selection")),
        *_prompt_rows(metrics),
        "",
        "EX: the test-suite evaluator's execution match on the single dev database, DISTINCT kept,",
        "no value plugging; rows as bags, in order only when the gold SQL contains `order by`;",
        "columns may be permuted; a prediction that fails scores 0; every query ran in the sandbox",
        f"with a {context['timeout_s']:g} s limit. EM: Spider's exact set match (values and DISTINCT",
        "ignored, foreign-key columns identified). Latency: a batch's time divided by its size",
        "(generation; in best-of-k also the candidates' checks and the repair round). Intervals: 95% Wilson.",
        "",
        "## Known differences from the official EM",
        "",
        KNOWN_EM_DIFFERENCES,
        "## Excluded items (database missing)",
        "",
        _id_ranges(context["missing_db_ids"]) or "none",
        "",
        "![EX and EM by hardness](chart.png)",
        "",
    ]
    return "\n".join(lines)


def _decoding_text(decoding: dict | None, rule: str | None = None) -> str:
    if not decoding:
        return "not recorded"
    if decoding["mode"] == "greedy":
        return "greedy"
    chosen_by = "the learned selector" if rule == "selector" else "majority vote"
    text = (f"best of {decoding['k']}: the greedy answer + {decoding['k'] - 1} drawn at temperature "
            f"{decoding['temperature']:g} (seed {decoding['seed']} + each batch's first id), {chosen_by} over results")
    if decoding["mode"] == "auto":
        text = "auto: the greedy answer where it passes the checks and returns rows, else " + text
    if decoding.get("first_k_of"):
        text += f"; the first {decoding['k']} candidates of `{decoding['first_k_of']}`"
    return text


def _selection_rows(selection: dict | None) -> list[str]:
    if not selection:
        return []
    rows = [
        f"| candidates that ran | {_pct(selection['candidates_ran_rate'])}% |",
        f"| questions where no candidate ran (repair round) | {selection['questions_without_a_running_candidate']} |",
        f"| ... of which the repaired query ran | {selection['repairs_that_ran']} |",
    ]
    if selection.get("any_candidate_ex") is not None:
        rows.append("| a right answer among the candidates (or the repair): the most a vote could score "
                    f"| {_pct(selection['any_candidate_ex'])}% |")
    return rows


def chart(metrics: dict, items: list[dict], total: int):
    """EX and EM per hardness level and overall, with 95% Wilson intervals."""
    from matplotlib.figure import Figure

    levels = [*LEVELS, "all"]
    figure = Figure(figsize=(8, 4), layout="constrained")
    axes = figure.add_subplot()
    for offset, key in ((-0.2, "ex"), (0.2, "em")):
        values, errors = [], [[], []]
        for level in levels:
            bucket = [i[key] for i in items if level == "all" or i["hardness"] == level]
            rate, (low, high) = rate_with_ci(bucket)
            values.append(100 * rate)
            errors[0].append(100 * (rate - low))
            errors[1].append(100 * (high - rate))
        axes.bar([x + offset for x in range(len(levels))], values, 0.4, yerr=errors, capsize=3, label=key.upper())
    axes.set_xticks(
        range(len(levels)),
        [f"{lvl}\n(n={sum(1 for i in items if lvl == 'all' or i['hardness'] == lvl)})" for lvl in levels],
    )
    axes.set_ylim(0, 100)
    axes.set_ylabel("%")
    axes.set_title(f"{metrics['model']}, Spider {metrics['split']} (n = {metrics['n']} of {total}), 95% CI")
    axes.legend(loc="upper right")
    axes.grid(axis="y", alpha=0.3)
    return figure


def write_report(out: Path, metrics: dict, items: list[dict], context: dict, predictions_path) -> None:
    (out / "report.md").write_text(report_markdown(metrics, items, context, predictions_path))
    chart(metrics, items, context["total"]).savefig(out / "chart.png", dpi=120)
