"""Fit the best-of-k selector (``text2sql/selector.json``) on saved candidates of questions the
adapter never trained on, choosing its features and regularisation by leave-one-database-out
cross-validation; report it against the vote.

Data: best-of-k runs over the Spider train questions of the databases the adapter's training
held out (``results/tuning/``). Each question's candidates are checked in the sandbox, grouped
by equal results, and each group labelled by whether its likeliest candidate (the one the
group answers with) matches gold by execution. The first run gives two views, all its
candidates and its first 4 (the greedy answer and 3 draws: what best of 4 sees); ``--extra``
runs (e.g. the base model's candidates for the same questions) add training views only.

Model: a linear score over ``text2sql.selector.FEATURES``, fitted by logistic regression on
the differences between a right and a wrong group of the same question (each question weighs
1), so only the ordering of groups within a question is learned. Questions with one group,
or with no right or no wrong group, teach nothing and are left out of fitting (never of scoring).

Choosing: every (feature set, C, training views) setting is scored by leave-one-database-out
cross-validation: fitted on 8 databases, each question of the 9th answered by its best-scored
group (ties and questions with one group as the vote decides; where nothing ran, the run's
repair), EX summed over both views. The best setting is refitted on all 9 databases and
written to ``--out``. Because the setting was chosen on those same folds, the script also runs
the whole choice again inside each fold (nested: choose on 8 databases, score on the 9th),
which is the honest estimate; both are in ``--report`` with McNemar against the vote.

    python -m evaluation.fit_selector results/tuning/qwen2.5-coder-0.5b-spider-best-of-8-train-held-out \\
        --extra results/tuning/qwen2.5-coder-0.5b-base-best-of-4-train-held-out --split train \\
        --out text2sql/selector.json --report results/tuning/selector_cv.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from text2sql.selection import result_groups, vote_rank
from text2sql.selector import FEATURE_GROUPS, group_features

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "vote+result": ("vote", "result"),
    "vote+result+model": ("vote", "result", "model"),
    "vote+result+question": ("vote", "result", "question"),
    "all": ("vote", "result", "model", "question"),
}
C_VALUES = (0.01, 0.03, 0.1, 0.3, 1.0)
TRAINING_VIEWS = {"main": ("main",), "main+first 4": ("main", "first 4"), "all views": ("main", "first 4", "extra")}
EVALUATION_VIEWS = ("main", "first 4")


@dataclasses.dataclass
class Question:
    id: int
    db_id: str
    features: list[dict[str, float]]
    """One row per group of equal results (empty when no candidate ran)."""
    right: list[bool]
    """Whether each group's likeliest candidate is right."""
    vote: int
    """The group the vote picks."""
    fallback_right: bool
    """Where no candidate ran: whether the run's repair (else the likeliest failure) is right."""
    matrices: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def teaches(self) -> bool:
        return any(self.right) and not all(self.right)

    def matrix(self, names: tuple[str, ...]) -> np.ndarray:
        """The features ``names`` of each group, one row per group (computed once per set of names)."""
        if names not in self.matrices:
            self.matrices[names] = np.array([[row[name] for name in names] for row in self.features], dtype=float)
        return self.matrices[names]


def labelled_questions(spider, split: str, run: Path, first: int | None = None) -> list[Question]:
    """Each question of ``run`` (its first ``first`` candidates), checked, grouped and labelled."""
    from evaluation.execution import execution_match
    from evaluation.vote_rules import checked_lines, pooled_lines
    from text2sql.selection import most_likely_failure

    examples = {e.id: e for e in spider.examples(split)}
    questions = []
    lines = pooled_lines([run], first)
    for line, candidates, schema in checked_lines(spider, lines, desc=f"{run.name} ({first or 'all'})"):
        db_id = line["db_id"]
        gold, db_path = examples[line["id"]].query, spider.db_path(db_id)

        def right(sql: str) -> bool:
            return bool(sql) and execution_match(db_path, gold, sql).match

        groups = result_groups(candidates)
        fallback = (line.get("repair") or {}).get("sql") or most_likely_failure(candidates).sql
        questions.append(Question(
            id=line["id"], db_id=db_id,
            features=group_features(groups, candidates, line["question"], schema) if groups else [],
            right=[right(max(g, key=lambda c: c.logprob).sql) for g in groups],
            vote=groups.index(max(groups, key=vote_rank)) if groups else -1,
            fallback_right=not groups and right(fallback),
        ))
    return questions


# ---------------------------------------------------------------------------
# Fitting and selecting


def fit(questions: list[Question], names: tuple[str, ...], c: float) -> dict:
    """The pairwise logistic regression on ``questions`` (those that teach): scales and weights."""
    from sklearn.linear_model import LogisticRegression

    teaching = [q for q in questions if q.teaches]
    rows = np.vstack([q.matrix(names) for q in questions if q.features])
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0
    differences, labels, weights = [], [], []
    for question in teaching:
        x = question.matrix(names) / scale
        pairs = [(i, j) for i, j in itertools.permutations(range(len(x)), 2) if question.right[i] != question.right[j]]
        for i, j in pairs:
            differences.append(x[i] - x[j])
            labels.append(int(question.right[i]))
            weights.append(1 / len(pairs))
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000)
    model.fit(np.array(differences), np.array(labels), sample_weight=np.array(weights))
    return {"features": list(names), "scale": scale.tolist(), "weights": model.coef_[0].tolist()}


def picks_right(model: dict, questions: list[Question]) -> list[bool]:
    """Whether the group the model scores best is right, per question."""
    weights = np.array(model["weights"]) / np.array(model["scale"])
    outcomes = []
    for question in questions:
        if not question.features:
            outcomes.append(question.fallback_right)
            continue
        scores = question.matrix(tuple(model["features"])) @ weights
        rows = question.features  # ties as select breaks them: more votes, then the likelier group
        best = max(range(len(scores)), key=lambda i: (scores[i], rows[i]["vote_share"], rows[i]["likeliest_gap"]))
        outcomes.append(question.right[best])
    return outcomes


def vote_right(questions: list[Question]) -> list[bool]:
    return [q.right[q.vote] if q.features else q.fallback_right for q in questions]


# ---------------------------------------------------------------------------
# Cross-validation


@dataclasses.dataclass(frozen=True)
class Setting:
    features: str
    c: float
    training: str

    def names(self) -> tuple[str, ...]:
        return tuple(name for group in FEATURE_SETS[self.features] for name in FEATURE_GROUPS[group])


SETTINGS = [Setting(f, c, t) for f in FEATURE_SETS for c in C_VALUES for t in TRAINING_VIEWS]


Views = dict[str, list[Question]]
"""The labelled questions by view: "main" (all candidates), "first 4", "extra" (other runs)."""


def held_out_outcomes(views: Views, setting: Setting, databases: list[str]) -> dict[str, list[bool]]:
    """Each evaluation view's outcomes on ``databases``, one database at a time left out of fitting
    (fitted on the other databases of the training views)."""
    outcomes: dict[str, list[bool]] = {view: [] for view in EVALUATION_VIEWS}
    for left_out in databases:
        training = [q for view in TRAINING_VIEWS[setting.training] for q in views[view]
                    if q.db_id in databases and q.db_id != left_out]
        model = fit(training, setting.names(), setting.c)
        for view in EVALUATION_VIEWS:
            outcomes[view] += picks_right(model, [q for q in views[view] if q.db_id == left_out])
    return outcomes


def best_setting(views: Views, databases: list[str]) -> tuple[Setting, dict[str, float]]:
    """The setting whose leave-one-database-out EX over ``databases`` (both views summed) is highest;
    every setting's total right picks."""
    totals = {}
    for setting in SETTINGS:
        outcomes = held_out_outcomes(views, setting, databases)
        totals[setting] = sum(sum(o) for o in outcomes.values())
    return max(totals, key=totals.get), totals


def nested_outcomes(views: Views, databases: list[str]) -> tuple[dict[str, list[bool]], list[Setting]]:
    """The whole procedure (choose the setting on 8 databases, fit on them) scored on the 9th."""
    from tqdm import tqdm

    outcomes: dict[str, list[bool]] = {view: [] for view in EVALUATION_VIEWS}
    chosen = []
    for left_out in tqdm(databases, desc="nested cross-validation", unit="db"):
        inner = [db for db in databases if db != left_out]
        setting, _ = best_setting(views, inner)
        chosen.append(setting)
        model = fit([q for view in TRAINING_VIEWS[setting.training] for q in views[view] if q.db_id in inner],
                    setting.names(), setting.c)
        for view in EVALUATION_VIEWS:
            outcomes[view] += picks_right(model, [q for q in views[view] if q.db_id == left_out])
    return outcomes, chosen


def ordered_by_database(questions: list[Question], databases: list[str]) -> list[Question]:
    """The questions in the order the cross-validation scores them (database by database)."""
    return [q for db in databases for q in questions if q.db_id == db]


def comparison(vote: list[bool], selector: list[bool]) -> dict:
    from evaluation.compare import paired_difference

    return paired_difference(vote, selector)


def main(argv: list[str] | None = None) -> None:
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a best-of-k run (8 candidates) on held-out train databases")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="more runs on the same questions (training only)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--spider", default=None,
                        help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the fitted model (JSON)")
    parser.add_argument("--report", type=Path, default=None, help="write the cross-validation figures here (JSON)")
    args = parser.parse_args(argv)

    spider = Spider(args.spider)
    views = {"main": labelled_questions(spider, args.split, args.run),
             "first 4": labelled_questions(spider, args.split, args.run, first=4),
             "extra": [q for run in args.extra for q in labelled_questions(spider, args.split, run)]}
    databases = sorted({q.db_id for q in views["main"]})
    setting, totals = best_setting(views, databases)
    chosen_cv = held_out_outcomes(views, setting, databases)
    nested, nested_settings = nested_outcomes(views, databases)
    model = fit([q for view in TRAINING_VIEWS[setting.training] for q in views[view]], setting.names(), setting.c)

    report = {"runs": [str(args.run), *map(str, args.extra)], "split": args.split, "databases": databases,
              "setting": dataclasses.asdict(setting), "views": {}}
    print(f"{len(databases)} databases; chosen: features {setting.features}, C {setting.c}, "
          f"trained on {setting.training}")
    print(f"{'view':10} {'n':>4} {'teach':>6} {'missed':>6} {'vote':>6} {'CV':>6} {'p':>7} {'nested':>7} {'p':>7}")
    for view in EVALUATION_VIEWS:
        questions = ordered_by_database(views[view], databases)
        vote = vote_right(questions)
        plain, honest = comparison(vote, chosen_cv[view]), comparison(vote, nested[view])
        teaching = [q for q in questions if q.teaches]
        missed = sum(not q.right[q.vote] for q in teaching)
        report["views"][view] = {"questions that teach": len(teaching), "the vote missed a right group": missed,
                                 "vote": plain["a"], "chosen setting": plain, "nested": honest}
        print(f"{view:10} {len(vote):4} {len(teaching):6} {missed:6} {100 * plain['a']:6.1f} {100 * plain['b']:6.1f} "
              f"{plain['p_value']:7.3g} {100 * honest['b']:7.1f} {honest['p_value']:7.3g}")
    report["nested settings"] = [dataclasses.asdict(s) for s in nested_settings]
    report["settings"] = [{**dataclasses.asdict(s), "right": total} for s, total in totals.items()]
    model.update(fitted_on=report["runs"], split=args.split, databases=databases, setting=report["setting"])
    args.out.write_text(json.dumps(model, indent=1) + "\n")
    if args.report:
        args.report.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
