"""The leaderboard read from results/*/metrics.json: loading, the table, the chart.

    python -m pytest tests/test_leaderboard.py -v
"""

import json

import pytest
from matplotlib.container import BarContainer

from text2sql.leaderboard import leaderboard_chart, leaderboard_table, load_results, wilson_interval


def metrics(ex, em, *, model, n=972, per_hardness_ex=(0.8, 0.6, 0.4, 0.2)):
    sizes = {"easy": 240, "medium": 430, "hard": 170, "extra": 132}
    return {
        "n": n,
        "ex": ex,
        "em": em,
        "chatty_rate": 0.05,
        "valid_sql_rate": 0.97,
        "ex_ci95": [ex - 0.03, ex + 0.03],
        "em_ci95": [em - 0.03, em + 0.03],
        "per_hardness": {
            level: {"n": sizes[level], "ex": value, "em": value - 0.1}
            for level, value in zip(("easy", "medium", "hard", "extra"), per_hardness_ex)
        },
        "latency_ms": {"p50": 2900.0, "p95": 6100.0},
        "model": model,
        "split": "dev",
        "evaluator_version": "1",
    }


@pytest.fixture
def results_dir(tmp_path):
    runs = {
        "qwen-base": metrics(0.512, 0.301, model="qwen2.5-coder-0.5b"),
        "qwen-lora": {**metrics(0.634, 0.455, model="qwen2.5-coder-0.5b-spider", per_hardness_ex=(0.9, 0.7, 0.5, 0.3)),
                      "decoding": {"mode": "best-of-k", "k": 8, "temperature": 0.8, "seed": 0}},
        "smollm2": metrics(0.031, 0.010, model="smollm2-135m", per_hardness_ex=(0.05, 0.03, 0.0, 0.0)),
    }
    for run, data in runs.items():
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.json").write_text(json.dumps(data))
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / "unfinished").mkdir()  # a run still generating: no metrics yet
    return tmp_path


def test_load_results_reads_every_run_and_names_it_by_folder(results_dir):
    results = load_results(results_dir)
    assert [r["run"] for r in results] == ["qwen-base", "qwen-lora", "smollm2"]
    assert results[1]["ex"] == 0.634 and results[1]["model"] == "qwen2.5-coder-0.5b-spider"


def test_load_results_of_a_missing_or_empty_folder_is_empty(tmp_path):
    assert load_results(tmp_path / "nope") == []
    assert load_results(tmp_path) == []


def test_a_broken_metrics_file_is_skipped_with_a_warning_naming_it(results_dir):
    (results_dir / "broken").mkdir()
    (results_dir / "broken" / "metrics.json").write_text('{"n": 3, "ex": ')
    with pytest.warns(UserWarning, match="broken/metrics.json"):
        results = load_results(results_dir)
    assert [r["run"] for r in results] == ["qwen-base", "qwen-lora", "smollm2"]


def test_table_has_one_row_per_run_best_first_in_percent(results_dir):
    table = leaderboard_table(load_results(results_dir))
    assert list(table["run"]) == ["qwen-lora", "qwen-base", "smollm2"]
    best = table.iloc[0]
    assert best["EX %"] == 63.4 and best["EM %"] == 45.5
    assert best["EX 95% CI"] == "60.4–66.4"
    assert best["chatty %"] == 5.0 and best["valid SQL %"] == 97.0
    assert [best[f"{level} EX %"] for level in ("easy", "medium", "hard", "extra")] == [90.0, 70.0, 50.0, 30.0]
    assert best["n"] == 972
    assert (best["p50 s"], best["p95 s"]) == (2.9, 6.1)
    assert list(table["decoding"]) == ["best of 8 (T 0.8)", "greedy", "greedy"]  # runs that didn't record it were greedy


def test_table_tolerates_missing_fields(tmp_path):
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "metrics.json").write_text(json.dumps({"n": 10, "ex": 0.5}))
    table = leaderboard_table(load_results(tmp_path))
    assert table.iloc[0]["EX %"] == 50.0
    assert table.iloc[0]["EX 95% CI"] == ""
    assert table["EM %"].isna().all()
    assert table["p50 s"].isna().all()


def test_the_table_names_the_cpu_each_run_was_made_on():
    from evaluation.report import run_cpu

    assert run_cpu([{"cpu": "avx2"}, {"cpu": "avx2"}]) == {"avx2": 2}
    assert run_cpu([{"id": 1}]) is None  # made before the CPU was recorded
    resumed = run_cpu([{"cpu": "avx2"}, {"cpu": "avx512_bf16"}, {"cpu": "avx2"}])
    results = [
        {**metrics(0.5, 0.4, model="m"), "run": "one-kind", "cpu": {"avx512_bf16": 972}},
        {**metrics(0.5, 0.4, model="m"), "run": "resumed", "cpu": resumed},
        {**metrics(0.5, 0.4, model="m"), "run": "old"},
    ]
    assert leaderboard_table(results)["CPU"].tolist() == ["avx512_bf16", "avx2 ×2, avx512_bf16 ×1", "not recorded"]


def test_a_run_whose_prompts_showed_only_some_tables_says_so():
    results = [
        {**metrics(0.6, 0.4, model="m"), "run": "cut", "schema_tables": 3},
        {**metrics(0.5, 0.4, model="m"), "run": "whole"},
    ]
    assert leaderboard_table(results)["decoding"].tolist() == ["greedy, 3 tables", "greedy"]


def test_a_run_whose_sql_ran_as_written_says_so():
    results = [{**metrics(0.5, 0.4, model="m"), "run": "written", "fix_column_names": False, "schema_tables": 3}]
    assert leaderboard_table(results)["decoding"].tolist() == ["greedy, 3 tables, SQL as written"]


def test_empty_results_give_an_empty_table_with_the_columns():
    table = leaderboard_table([])
    assert len(table) == 0 and "EX %" in table.columns and "extra EX %" in table.columns


def test_wilson_interval_matches_a_known_value():
    # 50 of 100: the Wilson 95% interval is 0.4038-0.5962.
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0.0, 0) == (0.0, 1.0)
    assert wilson_interval(1.0, 20)[1] == 1.0


def test_chart_has_a_bar_per_run_best_at_the_top_coloured_by_model(results_dir):
    results = load_results(results_dir)
    figure = leaderboard_chart(results)
    axes = figure.axes[0]
    ranked = sorted(results, key=lambda r: r["ex"])
    assert [t.get_text() for t in axes.get_yticklabels()] == [r["run"] for r in ranked]  # best at the top
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [r["model"] for r in results]
    bar_groups = [c for c in axes.containers if isinstance(c, BarContainer)]
    colours = [tuple(group.patches[0].get_facecolor()) for group in bar_groups]
    assert len(set(colours)) == len(bar_groups)  # one colour per model
    lora = bar_groups[[r["run"] for r in results].index("qwen-lora")]  # one run per model here
    assert [bar.get_width() for bar in lora.patches] == pytest.approx([63.4])
    # The error bar spans the run's own ex_ci95.
    [segment] = lora.errorbar.lines[2][0].get_segments()
    assert (segment[0][0], segment[1][0]) == pytest.approx((60.4, 66.4))


def test_chart_renders_to_png(results_dir, tmp_path):
    target = tmp_path / "chart.png"
    leaderboard_chart(load_results(results_dir)).savefig(target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leaderboard_chart([]).savefig(tmp_path / "empty.png")


def test_decoding_labels_name_auto_with_the_k_it_escalates_to():
    from text2sql.leaderboard import decoding_label

    assert decoding_label({"mode": "auto", "k": 8, "temperature": 0.8, "seed": 0}) == "auto, best of 8 (T 0.8)"
    assert decoding_label({"mode": "greedy"}) == decoding_label(None) == "greedy"
