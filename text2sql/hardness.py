"""Spider's hardness levels (easy / medium / hard / extra) of a SQL query.

The rules of the official evaluators' ``eval_hardness``, applied to the query in Spider's
parsed shape (``text2sql.spider_sql``). Three counts decide the level:

* component 1: WHERE, GROUP BY, ORDER BY, LIMIT (one each), one per joined table, and one
  per OR and per LIKE in the join conditions, WHERE and HAVING (HAVING itself is not counted);
* component 2: subqueries used as condition values, plus the set operation (INTERSECT /
  UNION / EXCEPT) at the top level; subqueries in FROM don't count;
* others (0-4): more than one "aggregate", more than one SELECT item, more than one WHERE
  condition, more than one GROUP BY column. The official code counts as "aggregates" the
  aggregates of SELECT items, GROUP BY and ORDER BY columns, and also every NOT-ed WHERE
  condition and every NOT-ed HAVING condition or AND/OR between HAVING conditions (it reads
  the first field of those entries, which is not an aggregate); we keep that, since the
  published counts depend on it.

Only the top level is inspected (the left arm of a set operation). On Spider dev this gives
easy 248 / medium 446 / hard 174 / extra 166, the official counts.

    python -m text2sql.hardness            # counts over Spider dev
    from text2sql.hardness import hardness; hardness("SELECT count(*) FROM singer")  # 'easy'
"""

from __future__ import annotations

from collections import Counter

from text2sql.spider_sql import Cond, Query, parse_spider


LEVELS = ("easy", "medium", "hard", "extra")


def hardness(sql: str) -> str:
    """"easy", "medium", "hard" or "extra". Raises sqlglot's ParseError if ``sql`` isn't SQL."""
    return level(parse_spider(sql).query)


def level(query: Query) -> str:
    comp1, comp2, others = component1(query), component2(query), count_others(query)
    if comp1 <= 1 and others == 0 and comp2 == 0:
        return "easy"
    if comp2 == 0 and ((others <= 2 and comp1 <= 1) or (comp1 <= 2 and others < 2)):
        return "medium"
    if (
        (others > 2 and comp1 <= 2 and comp2 == 0)
        or (2 < comp1 <= 3 and others <= 2 and comp2 == 0)
        or (comp1 <= 1 and others == 0 and comp2 <= 1)
    ):
        return "hard"
    return "extra"


def _units(condition: tuple) -> list[Cond]:
    return [c for c in condition if isinstance(c, Cond)]


def _conditions(query: Query) -> tuple:
    return query.join_conds + query.where + query.having


def component1(query: Query) -> int:
    count = sum([bool(query.where), bool(query.group_by), query.order is not None, query.limit])
    count += max(0, len(query.tables) - 1)
    everything = _conditions(query)
    count += everything.count("or")
    count += sum(c.op == "like" for c in _units(everything))
    return count


def component2(query: Query) -> int:
    nested = sum(isinstance(v, Query) for c in _units(_conditions(query)) for v in (c.val1, c.val2))
    return nested + (query.set_op is not None)


def _aggregates(query: Query) -> int:
    count = sum(agg is not None for agg, _ in query.select)
    count += sum(c.negated for c in _units(query.where))
    count += sum(unit.agg is not None for unit in query.group_by)
    if query.order:
        count += sum(u.agg is not None for v in query.order[1] for u in (v.left, v.right) if u)
    # HAVING entries: a NOT-ed condition or a connective counts (see the module docstring).
    count += sum(c.negated if isinstance(c, Cond) else 1 for c in query.having)
    return count


def count_others(query: Query) -> int:
    return sum(
        [
            _aggregates(query) > 1,
            len(query.select) > 1,
            len(query.where) > 1,
            len(query.group_by) > 1,
        ]
    )


if __name__ == "__main__":
    from text2sql.spider import Spider

    spider = Spider()
    examples = spider.examples("dev")
    everything = Counter(hardness(e.query) for e in examples)
    runnable = Counter(hardness(e.query) for e in examples if spider.has_database(e.db_id))
    for name, counts in (("all dev", everything), ("dev with a database", runnable)):
        print(f"{name} (n = {sum(counts.values())}): " + ", ".join(f"{k} {counts[k]}" for k in LEVELS))
