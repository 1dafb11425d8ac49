"""When two query results are "the same answer": the rule of Spider's execution accuracy.

Shared by the evaluation (``evaluation.execution``, EX against a gold query) and by
best-of-k selection (``text2sql.selection``, voting over candidates' results), so both use
one notion of equal results: the semantics of ``exec_eval.py`` in
taoyds/test-suite-sql-eval (field.md §3.4):

* two empty results match; otherwise row counts and column counts must agree;
* rows are compared as bags (duplicates count), or as lists when ``ordered``;
* columns may be permuted: the second result matches if some reordering of its columns does.

    from text2sql.results import results_match
    results_match([(1, "a")], [("a", 1)], ordered=False)   # True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence


def results_match(gold: Sequence[tuple], predicted: Sequence[tuple], ordered: bool) -> bool:
    """Whether some permutation of ``predicted``'s columns gives ``gold``'s rows (as a bag, or
    as a list when ``ordered``)."""
    if not gold and not predicted:
        return True
    if len(gold) != len(predicted) or len(gold[0]) != len(predicted[0]):
        return False
    if not _same_row_contents(gold, predicted, ordered):
        return False
    gold_rows = list(gold) if ordered else Counter(gold)
    for permutation in candidate_permutations(gold, predicted):
        permuted = [tuple(row[i] for i in permutation) for row in predicted]
        if (permuted if ordered else Counter(permuted)) == gold_rows:
            return True
    return False


def _row_key(value) -> str:
    return str(value) + str(type(value))


def _same_row_contents(gold: Sequence[tuple], predicted: Sequence[tuple], ordered: bool) -> bool:
    """The official quick reject: each row's values sorted, then the rows compared as lists
    (ordered) or as sets."""
    gold_rows = [tuple(sorted(row, key=_row_key)) for row in gold]
    predicted_rows = [tuple(sorted(row, key=_row_key)) for row in predicted]
    return gold_rows == predicted_rows if ordered else set(gold_rows) == set(predicted_rows)


def candidate_permutations(gold: Sequence[tuple], predicted: Sequence[tuple]) -> Iterator[tuple[int, ...]]:
    """Column orders of ``predicted`` that could give ``gold``: predicted column j can stand in
    gold column i only if every value of j occurs in gold column i. (The official script checks
    20 random rows; checking all of them drops only orders that can't match, so the verdict is
    the same, and deterministic.)"""
    width = len(gold[0])
    gold_values = [{row[i] for row in gold} for i in range(width)]
    predicted_values = [{row[j] for row in predicted} for j in range(width)]
    allowed = [[j for j in range(width) if predicted_values[j] <= gold_values[i]] for i in range(width)]

    def extend(prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if len(prefix) == width:
            yield prefix
            return
        for j in allowed[len(prefix)]:
            if j not in prefix:
                yield from extend(prefix + (j,))

    return extend(())
