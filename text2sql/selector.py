"""The learned selector for best of k: a score for each group of equal results, from what the
group returns, how the model rated it, and how its SQL fits the question.

The vote (``text2sql.selection.vote_rank``) counts equal results and knows nothing of the
question; many wrong groups are wrong in visible ways (a count where the question asks for
names, no ORDER BY ... LIMIT for "the most", a value of the question missing from the SQL).
Each group of equal results gets the ``FEATURES`` below, computed from its likeliest
candidate; a linear model over them (``selector.json`` beside this file: feature names,
scales and weights, fitted by ``python -m evaluation.fit_selector`` on Spider train
questions of databases the adapter never trained on) scores every group, and the best score
wins. ``Verdict.score`` is the group's share of the question's softmax over those scores;
``Verdict.reason`` names the features that moved it most against the other groups.

    from text2sql.selector import Selector
    verdicts = Selector.load().judge(groups, candidates, question, schema)   # one per group
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from text2sql.schema import Schema
from text2sql.selection import Candidate, Verdict, answers_something, vote_rank

MODEL_PATH = Path(__file__).with_name("selector.json")

# What each feature measures; the reasons quote these words, so they name what a reader sees.
FEATURES: dict[str, str] = {
    # The result.
    "answers": "returns rows (not only NULLs)",
    "rows": "rows returned (log)",
    "one_value": "a single value",
    "null_share": "NULL values",
    "duplicate_rows": "repeated rows",
    # The vote.
    "vote_share": "share of the candidates that return it",
    "most_votes": "the most votes",
    "vote_pick": "the vote's pick",
    # The model.
    "probability_share": "the model's probability",
    "likeliest_gap": "its likeliest candidate's log-likelihood",
    "greedy": "holds the greedy answer",
    "token_logprob": "log-likelihood per token",
    "length": "length of the SQL (log tokens)",
    # The question against the SQL.
    "count_missing": "'how many' without a COUNT",
    "count_unasked": "a COUNT the question doesn't ask for",
    "superlative_missing": "'most'/'least' without ORDER BY ... LIMIT or MAX/MIN",
    "limit_unasked": "a LIMIT the question doesn't ask for",
    "average_mismatch": "AVG and 'average' disagree",
    "sum_mismatch": "SUM and 'total' disagree",
    "grouping_missing": "'each'/'per' without GROUP BY",
    "order_missing": "'order'/'sorted' without ORDER BY",
    "negation_missing": "'not'/'never'/'without' without NOT, != or EXCEPT",
    "tables": "tables joined",
    "tables_unnamed": "tables the question doesn't name",
    "terms_unused": "schema words of the question the SQL doesn't use",
    "words_uncovered": "words of the question the SQL doesn't cover",
    "echoes_filter": "returns the column it filters on",
    "having_missing": "'at least two' without a COUNT",
    "intersect_missing": "'both' without INTERSECT",
    "values_missing": "values of the question missing from the SQL",
    "literals_invented": "strings in the SQL that aren't in the question",
    "columns": "columns returned",
}

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "result": ("answers", "rows", "one_value", "null_share", "duplicate_rows", "columns"),
    "vote": ("vote_share", "most_votes", "vote_pick"),
    "model": ("probability_share", "likeliest_gap", "greedy", "token_logprob", "length"),
    "question": (
        "count_missing", "count_unasked", "superlative_missing", "limit_unasked", "average_mismatch",
        "sum_mismatch", "grouping_missing", "order_missing", "negation_missing", "tables", "tables_unnamed",
        "terms_unused", "values_missing", "literals_invented", "words_uncovered", "echoes_filter", "having_missing",
        "intersect_missing",
    ),
}
"""The features by where they come from (``evaluation.fit_selector`` chooses among these)."""


# ---------------------------------------------------------------------------
# Cues in the question


def _cue(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


COUNT_CUE = _cue(r"\bhow many\b|\bnumber of\b|\bcount\b")
SUPERLATIVE_CUE = _cue(
    r"\b(most|least|highest|lowest|largest|smallest|biggest|greatest|fewest|maximum|minimum|oldest|youngest|"
    r"newest|latest|earliest|longest|shortest|best|worst|top|cheapest|heaviest|lightest|(first|last)(?!\s+names?))\b"
)
NUMBERED_CUE = _cue(r"\b(top|first|last)\s+(\d+|two|three|four|five|ten)\b")
AVERAGE_CUE = _cue(r"\baverage\b|\bmean\b|\bavg\b")
SUM_CUE = _cue(r"\bsum\b|\btotal\b(?!\s+number)")
GROUPING_CUE = _cue(r"\beach\b|\bper\b|\bevery\b")
ORDER_CUE = _cue(r"\border\b|\bsort|\bascending\b|\bdescending\b|\balphabetic")
HAVING_CUE = _cue(
    r"\b(at least|more than|less than|fewer than|at most|greater than)\s+(one|two|three|four|five|[1-5])\b"
)
BOTH_CUE = _cue(r"\bboth\b")
NEGATION_CUE = _cue(r"\bnot\b|n't\b|\bnever\b|\bwithout\b|\bno\b|\bexcept\b|\bother than\b")
QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|'([^']{2,})'")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")


STOPWORDS = frozenset(
    "a an the of for in on at to by with from and or as is are was were be been do does did have has had that this "
    "these those their them they it its all what which who whom whose when where how there than then list show give "
    "find return tell display me us i please each every per also any some such".split()
)
CUE_WORDS = frozenset(
    "many number count most least highest lowest largest smallest biggest greatest fewest maximum minimum oldest "
    "youngest newest latest earliest longest shortest best worst top cheapest heaviest lightest first last average "
    "mean avg sum total order sort sorted ascend descend alphabetical alphabetically not never without no except "
    "other both more less fewer greater at one two three four five".split()
)


def content_stems(question: str) -> set[str]:
    """Stems of the words that say what the question is about (no stop words, cue words or numbers)."""
    words = [w for w in re.findall(r"[a-z0-9]+", question.lower()) if w not in STOPWORDS and w not in CUE_WORDS]
    return {_stem(w) for w in words if not w.isdigit()}


def covered(stem: str, others: frozenset[str]) -> bool:
    """Whether ``stem`` is one of ``others``, starts one or is started by one (3 letters at
    least), or shares its first five letters with one ("located", "location")."""
    return stem in others or any(_related(stem, other) for other in others)


def _related(a: str, b: str) -> bool:
    short, long = sorted((a, b), key=len)
    return (len(short) >= 3 and long.startswith(short)) or (len(short) >= 5 and short[:5] == long[:5])


def stems(text: str) -> set[str]:
    """Crude word stems of a sentence or an identifier (snake_case and camelCase split)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return {_stem(word) for word in re.findall(r"[a-z0-9]+", text.lower())}


def _stem(word: str) -> str:
    """Plural and verb endings off: "courses" -> "course", "addresses" -> "address", "shipped" -> "ship"."""
    if len(word) <= 4:
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            stem = word[: -len(suffix)]
            return stem[:-1] if stem[-1] == stem[-2] and stem[-1] not in "aeiousl" else stem  # shipped -> ship
    return word


def question_values(question: str) -> list[str]:
    """What the question quotes, and the numbers it writes as digits."""
    quoted = [next(part for part in match if part) for match in QUOTED.findall(question)]
    return quoted + NUMBER.findall(QUOTED.sub(" ", question))


# ---------------------------------------------------------------------------
# The shape of a query


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the selector reads from a query's syntax."""

    projection_has: frozenset[str]
    """Aggregates in the (first) SELECT list: "count", "avg", "sum", "max", "min"."""
    anywhere: frozenset[str]
    """Aggregates and clauses anywhere: the above, "order", "limit", "group", "intersect", "negation"."""
    tables: frozenset[str]
    literals: tuple[str, ...]
    """String literals."""
    numbers: frozenset[str]
    """Number literals, as written."""
    words: frozenset[str]
    """Stems of every identifier the query names, and of the words of its strings."""
    echoes_filter: bool
    """A column of the SELECT list is also compared with a constant in WHERE."""


_AGGREGATES = {exp.Count: "count", exp.Avg: "avg", exp.Sum: "sum", exp.Max: "max", exp.Min: "min"}


@functools.lru_cache(maxsize=4096)
def shape(sql: str) -> Shape | None:
    """The query's shape, or None when sqlglot can't read it (SQLite could: the features stay 0)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return None
    if not isinstance(tree, exp.Query):
        return None

    def aggregates(node) -> set[str]:
        return {name for kind, name in _AGGREGATES.items() if node.find(kind)}

    anywhere = aggregates(tree)
    clauses = ((exp.Order, "order"), (exp.Limit, "limit"), (exp.Group, "group"), (exp.Intersect, "intersect"))
    anywhere |= {name for kind, name in clauses if tree.find(kind)}
    if tree.find(exp.Not, exp.NEQ, exp.Except):
        anywhere.add("negation")
    projection = set().union(*(aggregates(node) for node in tree.selects)) if tree.selects else set()
    identifiers = {i.name for i in tree.find_all(exp.Identifier)}
    literals = tuple(lit.this for lit in tree.find_all(exp.Literal) if lit.is_string)
    return Shape(
        projection_has=frozenset(projection),
        anywhere=frozenset(anywhere),
        tables=frozenset(t.name.lower() for t in tree.find_all(exp.Table)),
        literals=literals,
        numbers=frozenset(lit.this for lit in tree.find_all(exp.Literal) if lit.is_number),
        words=frozenset(set().union(set(), *(stems(text) for text in (*identifiers, *literals)))),
        echoes_filter=_echoes_filter(tree),
    )


def _echoes_filter(tree: exp.Query) -> bool:
    selected = {c.name.lower() for node in tree.selects for c in node.find_all(exp.Column)}
    where = tree.args.get("where")
    if not selected or where is None:
        return False
    for comparison in where.find_all(exp.EQ, exp.Like):
        sides = (comparison.left, comparison.right)
        if any(isinstance(side, exp.Literal) for side in sides):
            if any(isinstance(side, exp.Column) and side.name.lower() in selected for side in sides):
                return True
    return False


# ---------------------------------------------------------------------------
# Features


def group_features(
    groups: list[list[Candidate]], candidates: list[Candidate], question: str, schema: Schema
) -> list[dict[str, float]]:
    """``FEATURES`` for each group of equal results (``text2sql.selection.result_groups``);
    ``candidates`` are all the question's candidates in the order drawn (the first greedy)."""
    ran = [c for group in groups for c in group]
    top_logprob = max(c.logprob for c in ran)
    total_probability = sum(math.exp(c.logprob - top_logprob) for c in ran)
    most = max(len(group) for group in groups)
    vote = max(groups, key=vote_rank)
    asked = _QuestionCues.of(question, schema)
    features = []
    for group in groups:
        pick = max(group, key=lambda c: c.logprob)
        row = {
            **_result_features(pick),
            "vote_share": len(group) / len(candidates),
            "most_votes": float(len(group) == most),
            "vote_pick": float(group is vote),
            "probability_share": sum(math.exp(c.logprob - top_logprob) for c in group) / total_probability,
            "likeliest_gap": pick.logprob - top_logprob,
            "greedy": float(any(c is candidates[0] for c in group)),
            "token_logprob": pick.logprob / max(1, pick.tokens),
            "length": math.log1p(pick.tokens),
            **asked.against(shape(pick.sql)),
        }
        features.append(row)
    return features


def _result_features(pick: Candidate) -> dict[str, float]:
    rows = pick.result.rows
    values = [value for row in rows for value in row]
    return {
        "answers": float(answers_something(pick.result)),
        "rows": math.log1p(len(rows)),
        "one_value": float(len(rows) == 1 and len(rows[0]) == 1),
        "null_share": sum(v is None for v in values) / len(values) if values else 0.0,
        "duplicate_rows": 1 - len(set(rows)) / len(rows) if rows else 0.0,
        "columns": float(len(pick.result.columns)),
    }


@dataclasses.dataclass(frozen=True)
class _QuestionCues:
    count: bool
    superlative: bool
    numbered: bool
    average: bool
    sum: bool
    grouping: bool
    order: bool
    negation: bool
    having: bool
    both: bool
    text: str
    words: frozenset[str]
    schema_words: frozenset[str]
    """Stems of the question that name a table or a column of the schema."""
    values: tuple[str, ...]
    content: frozenset[str]

    @classmethod
    def of(cls, question: str, schema: Schema) -> _QuestionCues:
        words = stems(question)
        names = set().union(*(stems(t.name) | set().union(*map(stems, t.column_names())) for t in schema.tables))
        return cls(
            count=bool(COUNT_CUE.search(question)), superlative=bool(SUPERLATIVE_CUE.search(question)),
            numbered=bool(NUMBERED_CUE.search(question)), average=bool(AVERAGE_CUE.search(question)),
            sum=bool(SUM_CUE.search(question)), grouping=bool(GROUPING_CUE.search(question)),
            order=bool(ORDER_CUE.search(question)), negation=bool(NEGATION_CUE.search(question)),
            having=bool(HAVING_CUE.search(question)), both=bool(BOTH_CUE.search(question)),
            text=question.lower(), words=frozenset(words), schema_words=frozenset(words & names),
            values=tuple(question_values(question)), content=frozenset(content_stems(question)),
        )

    def against(self, query: Shape | None) -> dict[str, float]:
        names = FEATURE_GROUPS["question"]
        if query is None:
            return dict.fromkeys(names, 0.0)
        has = query.anywhere
        superlative_done = ("order" in has and "limit" in has) or bool({"max", "min"} & has)
        unnamed = [t for t in query.tables if not stems(t) & self.words]
        literals = [lit for lit in query.literals if lit.strip("%").lower() not in self.text]
        strings = " ".join(query.literals).lower()
        values = [v for v in self.values if v not in query.numbers and v.lower() not in strings]
        return {
            "count_missing": float(self.count and "count" not in query.projection_has),
            "count_unasked": float("count" in query.projection_has and not self.count),
            "superlative_missing": float(self.superlative and not superlative_done),
            "limit_unasked": float("limit" in has and not (self.superlative or self.numbered)),
            "average_mismatch": float(self.average != ("avg" in has)),
            "sum_mismatch": float(self.sum != ("sum" in has)),
            "grouping_missing": float(self.grouping and "group" not in has),
            "order_missing": float(self.order and "order" not in has),
            "negation_missing": float(self.negation and "negation" not in has),
            "tables": float(len(query.tables)),
            "tables_unnamed": float(len(unnamed)),
            "terms_unused": len(self.schema_words - query.words) / max(1, len(self.schema_words)),
            "values_missing": float(len(values)),
            "literals_invented": float(len(literals)),
            "words_uncovered": float(sum(not covered(word, query.words) for word in self.content)),
            "echoes_filter": float(query.echoes_filter),
            "having_missing": float(self.having and "count" not in has),
            "intersect_missing": float(self.both and "intersect" not in has),
        }


# ---------------------------------------------------------------------------
# The fitted model


@dataclasses.dataclass(frozen=True)
class Selector:
    """A linear score over some of ``FEATURES``: sum of weight * feature / scale."""

    features: tuple[str, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Selector:
        """The fitted model (default: the one shipped beside this module)."""
        return _load(str(path or MODEL_PATH))

    def scores(self, rows: list[dict[str, float]]) -> list[float]:
        return [sum(w * row[name] / s for name, s, w in zip(self.features, self.scale, self.weights)) for row in rows]

    def judge(
        self, groups: list[list[Candidate]], candidates: list[Candidate], question: str, schema: Schema
    ) -> list[Verdict]:
        """A ``Verdict`` per group: its softmax share of the question's scores, and the features
        that set it apart from the other groups most (for: raised its score; against: lowered it;
        ↑/↓: it has more/less of that than the others on average)."""
        if len(groups) == 1:
            return [Verdict(1.0, "the only result")]
        rows = group_features(groups, candidates, question, schema)
        scores = self.scores(rows)
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        return [Verdict(e / sum(exps), self._reason(row, rows)) for e, row in zip(exps, rows)]

    def _reason(self, row: dict[str, float], rows: list[dict[str, float]]) -> str:
        effects = []
        for name, scale, weight in zip(self.features, self.scale, self.weights):
            difference = row[name] - sum(r[name] for r in rows) / len(rows)
            effect = weight * difference / scale
            if abs(effect) >= REASON_THRESHOLD:
                effects.append((effect, f"{FEATURES[name]} {'↑' if difference > 0 else '↓'}"))
        effects.sort(key=lambda pair: -abs(pair[0]))
        pros = [text for effect, text in effects if effect > 0][:2]
        cons = [text for effect, text in effects if effect < 0][:2]
        parts = [f"for: {', '.join(pros)}"] * bool(pros) + [f"against: {', '.join(cons)}"] * bool(cons)
        return "; ".join(parts) or "like the others"


REASON_THRESHOLD = 0.1
"""Effects on the score (log-odds) smaller than this are not worth a word."""


@functools.cache
def _load(path: str) -> Selector:
    try:
        fitted = json.loads(Path(path).read_text())
        unknown = set(fitted["features"]) - set(FEATURES)
        if unknown:
            raise ValueError(f"features this code doesn't compute: {sorted(unknown)}")
        return Selector(tuple(fitted["features"]), tuple(fitted["scale"]), tuple(fitted["weights"]))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"Can't read the selector model {path}: {error}") from None
