"""The leaderboard: every evaluation run under ``results/`` as one table and one chart.

An evaluation run writes ``results/<run>/metrics.json`` (see ``python -m evaluation.evaluate``):

    {"n", "ex", "em", "chatty_rate", "valid_sql_rate", "ex_ci95": [lo, hi], "em_ci95",
     "per_hardness": {"easy": {"n", "ex", "em"}, "medium": ..., "hard": ..., "extra": ...},
     "latency_ms": {"p50", "p95"}, "model", "split", "evaluator_version",
     "decoding": {"mode", "k", "temperature", "seed"} or null, "selection": {...} or null,
     "cpu": {kind: predictions made on it} or null (text2sql.cpu.kind)}

with rates as fractions in [0, 1]. The app's Compare tab and the evaluation reports both
read it through here:

    from text2sql.leaderboard import load_results, leaderboard_table, leaderboard_chart
    results = load_results("results")
    print(leaderboard_table(results).to_string(index=False))
    leaderboard_chart(results).savefig("leaderboard.png")
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure


HARDNESS = ("easy", "medium", "hard", "extra")
_COLUMNS = ["run", "model", "decoding", "n", "EX %", "EX 95% CI", "EM %", "chatty %", "valid SQL %"] + [
    f"{level} EX %" for level in HARDNESS
] + ["p50 s", "p95 s", "CPU"]


def load_results(results_dir: str | os.PathLike) -> list[dict]:
    """Every ``<results_dir>/*/metrics.json``, each with ``"run"`` (its folder name) added,
    in folder-name order. A file that isn't a JSON object is skipped with a warning naming it."""
    results = []
    for path in sorted(Path(results_dir).glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            warnings.warn(f"Skipping {path}: {error}", stacklevel=2)
            continue
        if not isinstance(metrics, dict):
            warnings.warn(f"Skipping {path}: expected a JSON object", stacklevel=2)
            continue
        results.append({**metrics, "run": path.parent.name})
    return results


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``rate`` observed on ``n`` items."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percent(value) -> float | None:
    return None if value is None else round(100 * value, 1)


def _seconds(latency: dict | None, which: str) -> float | None:
    """A latency percentile in seconds (1 decimal); None when the run has none (e.g. best of k
    derived from a larger k, whose time says nothing about it)."""
    value = (latency or {}).get(which)
    return None if value is None else round(value / 1000, 1)


def _ci_text(ci) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else ""


def decoding_label(decoding: dict | None) -> str:
    """"greedy" or "best of 8 (T 0.8)". A run that didn't record how it decoded was greedy:
    runs have recorded it since best-of-k existed (as ``evaluation.evaluate`` assumes too)."""
    if not decoding:
        return "greedy"
    if decoding.get("mode") not in ("best-of-k", "auto"):
        return str(decoding.get("mode", ""))
    text = f"best of {decoding.get('k')} (T {decoding.get('temperature'):g})"
    return text if decoding["mode"] == "best-of-k" else f"auto, {text}"


def settings_label(result: dict) -> str:
    """A run's settings off their default: ", 3 tables" (prompts cut to the 3 likeliest tables),
    ", SQL as written" (column names not put right)."""
    label = f", {result['schema_tables']} tables" if result.get("schema_tables") else ""
    return label + (", SQL as written" if result.get("fix_column_names") is False else "")


def cpu_label(kinds: dict[str, int] | None) -> str:
    """The CPU kind a run was generated on (``text2sql.cpu.kind``); counts when a resumed run
    mixes kinds; "not recorded" for runs made before it was recorded."""
    if not kinds:
        return "not recorded"
    if len(kinds) == 1:
        return next(iter(kinds))
    return ", ".join(f"{kind} ×{count}" for kind, count in kinds.items())


def leaderboard_table(results: list[dict]) -> pd.DataFrame:
    """One row per run, best execution accuracy first; rates in percent (1 decimal)."""
    rows = []
    for result in results:
        per_hardness = result.get("per_hardness") or {}
        row = {
            "run": result["run"],
            "model": result.get("model", ""),
            "decoding": decoding_label(result.get("decoding")) + settings_label(result),
            "n": result.get("n"),
            "EX %": _percent(result.get("ex")),
            "EX 95% CI": _ci_text(result.get("ex_ci95")),
            "EM %": _percent(result.get("em")),
            "chatty %": _percent(result.get("chatty_rate")),
            "valid SQL %": _percent(result.get("valid_sql_rate")),
        }
        for level in HARDNESS:
            row[f"{level} EX %"] = _percent((per_hardness.get(level) or {}).get("ex"))
        row["p50 s"] = _seconds(result.get("latency_ms"), "p50")
        row["p95 s"] = _seconds(result.get("latency_ms"), "p95")
        row["CPU"] = cpu_label(result.get("cpu"))
        rows.append(row)
    table = pd.DataFrame(rows, columns=_COLUMNS)
    return table.sort_values("EX %", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _ex_with_ci(result: dict, level: str) -> tuple[float, float, float]:
    """(EX, CI low, CI high) for one hardness level, or "all" (the run's own interval)."""
    if level == "all":
        ex = result.get("ex") or 0.0
        low, high = result.get("ex_ci95") or wilson_interval(ex, result.get("n") or 0)
        return ex, low, high
    bucket = (result.get("per_hardness") or {}).get(level) or {}
    ex = bucket.get("ex") or 0.0
    return (ex, *wilson_interval(ex, bucket.get("n") or 0))


def leaderboard_chart(results: list[dict]) -> Figure:
    """One horizontal bar per run, best at the top: overall execution accuracy with its 95% CI,
    coloured by model (one colour each, named in the legend), the value written beside it.
    Per-hardness figures are in ``leaderboard_table``: grouped bars of many runs were unreadable."""
    ranked = sorted(results, key=lambda r: r.get("ex") or 0.0)
    figure = Figure(figsize=(9, 1.2 + 0.38 * max(1, len(ranked))), layout="constrained")
    axes = figure.add_subplot()
    models = list(dict.fromkeys(r.get("model", "") for r in results))
    palette = colormaps["tab10" if len(models) <= 10 else "tab20"]
    for model_index, model in enumerate(models):
        rows = [(i, r) for i, r in enumerate(ranked) if r.get("model", "") == model]
        values = [_ex_with_ci(r, "all") for _, r in rows]
        errors = [[100 * (ex - low) for ex, low, _ in values], [100 * (high - ex) for ex, _, high in values]]
        bars = axes.barh([i for i, _ in rows], [100 * ex for ex, _, _ in values], xerr=errors, capsize=3,
                         color=palette(model_index % palette.N), label=model)
        axes.bar_label(bars, labels=[f"{100 * ex:.1f}" for ex, _, _ in values], padding=4, fontsize="small")
    axes.set_yticks(range(len(ranked)), [r["run"] for r in ranked], fontsize="small")
    axes.set_xlabel("execution accuracy (%)")
    axes.set_xlim(0, 100)
    splits = {r.get("split") for r in results}
    dataset = f"Spider {splits.pop()}: " if len(splits) == 1 and None not in splits else ""
    axes.set_title(f"{dataset}execution accuracy (95% CI)")
    if results:
        axes.legend(title="model", loc="lower right", fontsize="small")
    axes.grid(axis="x", alpha=0.3)
    return figure
