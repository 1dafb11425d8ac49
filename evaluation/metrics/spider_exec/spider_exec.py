"""Spider execution accuracy as a Hugging Face ``evaluate`` metric (loads offline from this folder).

A thin wrapper: the scoring is ``evaluation.execution.execution_match`` (the test-suite
evaluator's execution match on one database, DISTINCT kept, every query in the sandbox with
a time limit), which does not depend on ``evaluate``. Run from the repository root:

    import evaluate
    metric = evaluate.load("evaluation/metrics/spider_exec")
    metric.compute(predictions=["SELECT count(*) FROM singer"], references=["SELECT count(*) FROM singer"],
                   db_path=["../shared/spider/database/concert_singer/concert_singer.sqlite"])
    # {'execution_accuracy': 1.0, 'valid_sql_rate': 1.0}
"""

import datasets
import evaluate

from evaluation.execution import execution_match


_DESCRIPTION = """\
Execution accuracy for text-to-SQL on SQLite: the predicted and the gold query both run on
the example's database; they match when their results are equal as bags of rows (in order
only when the gold contains "order by"), allowing the columns to be permuted. A prediction
that fails to run, or runs past the time limit, scores 0. These are the semantics of
taoyds/test-suite-sql-eval's exec_eval.py with --keep_distinct on a single database.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted SQL strings.
    references: gold SQL strings.
    db_path: the SQLite file each pair runs on.
    timeout_s: seconds per query (default: the sandbox's limit, TEXT2SQL_QUERY_TIMEOUT_S).
Returns:
    execution_accuracy: share of predictions whose result matches the gold's.
    valid_sql_rate: share of predictions that ran without error.
"""

_CITATION = """\
@inproceedings{zhong2020semantic,
  title={Semantic Evaluation for Text-to-SQL with Distilled Test Suites},
  author={Zhong, Ruiqi and Yu, Tao and Klein, Dan},
  booktitle={EMNLP},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpiderExec(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "db_path": datasets.Value("string"),
                }
            ),
            reference_urls=["https://github.com/taoyds/test-suite-sql-eval"],
        )

    def _compute(self, predictions, references, db_path, timeout_s=None):
        outcomes = [
            execution_match(db, gold, pred, timeout_s) for pred, gold, db in zip(predictions, references, db_path)
        ]
        n = max(1, len(outcomes))
        return {
            "execution_accuracy": sum(o.match for o in outcomes) / n,
            "valid_sql_rate": sum(o.executed for o in outcomes) / n,
        }
