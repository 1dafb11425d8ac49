"""How often questions repeat the schema's own names: the premise of the robustness check.

For each question of a questions file (JSON lines ``{"id", "db_id", "question", "reworded"}``,
checked against the split by ``text2sql.spider.read_rewordings``), a table or column name of
its database counts as *mentioned* when the name's words (snake_case and CamelCase split,
lower-cased, plural s dropped: ``text2sql.prompt.word_stems``) occur in the question one after
another (``pet_type`` in "which pet type ...", not in "the type of pet"). Printed for
Spider's wording and the file's: the share of questions that mention any name, any name of two
or more words, and the mean number of names mentioned per question.

    python -m evaluation.schema_words evaluation/robustness/train_held_out_reworded.jsonl --split train
"""

from __future__ import annotations

import argparse
import dataclasses

from text2sql.prompt import word_stems
from text2sql.spider import Spider, read_rewordings


@dataclasses.dataclass
class Mentions:
    questions: int
    any_name: int
    multi_word_name: int
    names: int

    def row(self, wording: str) -> str:
        n = max(1, self.questions)
        return (
            f"| {wording} | {self.questions} | {100 * self.any_name / n:.1f}% | "
            f"{100 * self.multi_word_name / n:.1f}% | {self.names / n:.2f} |"
        )


def mentioned(question: str, names: list[str]) -> list[str]:
    """The ``names`` whose words occur consecutively in ``question``."""
    asked = word_stems(question)
    found = []
    for name in names:
        words = word_stems(name)
        if words and any(asked[i : i + len(words)] == words for i in range(len(asked) - len(words) + 1)):
            found.append(name)
    return found


def count_mentions(questions: list[tuple[str, str]], spider: Spider) -> Mentions:
    """Mentions over ``questions`` = [(db_id, question)]."""
    counts = Mentions(len(questions), 0, 0, 0)
    for db_id, question in questions:
        schema = spider.schema(db_id, 0)
        names = sorted({t.name for t in schema.tables} | {c.name for t in schema.tables for c in t.columns})
        found = mentioned(question, names)
        counts.any_name += bool(found)
        counts.multi_word_name += any(len(word_stems(name)) > 1 for name in found)
        counts.names += len(found)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", help="JSON lines {id, db_id, question, reworded}")
    parser.add_argument("--split", default="train", help="the split the ids index (default train)")
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    args = parser.parse_args(argv)
    spider = Spider(args.spider)
    examples = {e.id: e for e in spider.examples(args.split)}
    try:
        rewordings = read_rewordings(args.questions, list(examples.values()))
    except (OSError, ValueError) as error:
        raise SystemExit(str(error)) from None
    original = [(examples[i].db_id, examples[i].question) for i in rewordings]
    reworded = [(examples[i].db_id, text) for i, text in rewordings.items()]
    print("| wording | questions | mention a schema name | mention a multi-word name | names per question |")
    print("|---|---|---|---|---|")
    print(count_mentions(original, spider).row("Spider's"))
    print(count_mentions(reworded, spider).row(args.questions))


if __name__ == "__main__":
    main()
