"""A best-of-k run for a smaller k, made from a best-of-K run's first k candidates.

A best-of-K run (``evaluate --mode best-of-k``) keeps every question's candidates in the order
drawn: the greedy answer, then K - 1 independent draws at one temperature. Its first k are
therefore what a best-of-k run at that temperature draws (the greedy answer and k - 1 such
draws: other random numbers, the same distribution). This checks those k in the sandbox
again, votes among them, and runs the repair round with the model for the questions where
none of the k ran, as a best-of-k run would; then scores the result. With k = K it selects
again among all K with the current code (e.g. after a change to the repair round).

``latency_ms`` is left empty (null): the time of the K run says nothing about k. A best-of-k
run of its own (``evaluate --mode best-of-k --k k``, ``--limit N`` for a sample) records it.

The selection rule is the setting ``selection_rule`` (``TEXT2SQL_SELECTION_RULE``: ``selector``
or ``vote``), recorded on every line. ``--repairs-from RUN`` compares rules on the same
candidates without generating: RUN must hold the same first k candidates (a run made from the
same source and k), and its repairs are checked again instead of drawing new ones (so where no
candidate ran, the repair is the one RUN's rule chose among its k repairs).

    nice -n 10 python -m evaluation.fewer_candidates results/qwen2.5-coder-0.5b-base-bestof8 --k 4 \\
        --out results/qwen2.5-coder-0.5b-base-bestof4 --threads 1
    TEXT2SQL_SELECTION_RULE=selector python -m evaluation.fewer_candidates results/RUN-best-of-8 --k 8 \\
        --repairs-from results/RUN-best-of-8-rows-first --out results/RUN-best-of-8-selector
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from text2sql.selection import Candidate, Decoding


def source_decoding(predictions: list[dict], k: int) -> Decoding:
    from evaluation.report import run_decoding

    recorded = run_decoding(predictions)
    if not recorded or recorded["mode"] != "best-of-k" or "first_k_of" in recorded:
        raise SystemExit("The source must be a best-of-k run made by evaluate (its lines record the decoding).")
    if not 2 <= k <= recorded["k"]:
        raise SystemExit(f"--k must be from 2 to {recorded['k']} for a best-of-{recorded['k']} run.")
    return Decoding(recorded["mode"], k, recorded["temperature"], recorded["seed"])


def drawn_repairs(lines: list[dict], run: Path, k: int) -> dict[int, dict | None]:
    """Each question's repair in ``run`` (by id), once its lines are known to hold the same first
    ``k`` candidates as ``lines``."""
    from evaluation.score import read_predictions

    theirs = {line["id"]: line for line in read_predictions(run / "predictions.jsonl")}
    for line in lines:
        other = theirs.get(line["id"]) or {}
        if [c["sql"] for c in other.get("candidates") or []] != [c["sql"] for c in line["candidates"][:k]]:
            raise SystemExit(f"{run} does not hold the same first {k} candidates for question {line['id']}.")
    return {line["id"]: theirs[line["id"]]["repair"] for line in lines}


def reselected_lines(
    generator, spider, lines: list[dict], decoding: Decoding, source: str,
    repairs: dict[int, dict | None] | None = None,
) -> list[dict]:
    """The lines of one database, answered again from their first ``decoding.k`` candidates
    (``repairs``: the repairs drawn by an earlier run over them, by id, instead of new ones)."""
    from text2sql.pipeline import Database, select_answers
    from text2sql.settings import get_settings

    db_id = lines[0]["db_id"]
    database = Database(schema=spider.schema(db_id), sandbox=spider.sandbox(db_id), has_data=True, label=db_id)
    candidates = [[Candidate.from_record(c) for c in line["candidates"][: decoding.k]] for line in lines]
    drawn = None if repairs is None else [
        Candidate.from_record(repairs[line["id"]]) if repairs[line["id"]] else None for line in lines
    ]
    answers = select_answers(generator, database, [line["question"] for line in lines], candidates, decoding,
                             drawn_repairs=drawn)
    recorded = {**decoding.as_dict(), "first_k_of": source}
    new_lines = []
    for line, answer in zip(lines, answers):
        generation = answer.generation
        new_lines.append({
            **line,
            "prediction": generation.sql,
            "raw": generation.raw,
            "chatty": generation.chatty,
            "latency_ms": None,
            "decoding": recorded,
            "selection_rule": get_settings().selection_rule,
            "candidates": [c.as_dict() for c in generation.candidates],
            "repair": generation.repair.as_dict() if generation.repair else None,
        })
    return new_lines


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from evaluation.score import read_predictions, score_to_folder
    from text2sql.engine import load_generator
    from text2sql.spider import Spider

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a best-of-K run folder (with predictions.jsonl)")
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--spider", default=None, help="Spider folder (default: $TEXT2SQL_SPIDER_DIR or ../shared/spider)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (repairs only)")
    parser.add_argument("--repairs-from", type=Path, default=None,
                        help="a run over the same first k candidates: check its repairs again, draw none")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictions = read_predictions(Path(args.source) / "predictions.jsonl")
    decoding = source_decoding(predictions, args.k)
    repairs = drawn_repairs(predictions, args.repairs_from, args.k) if args.repairs_from else None
    spider = Spider(args.spider)
    generator = load_generator(predictions[0]["model"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "predictions.jsonl"
    with open(path, "w") as handle:
        groups = [list(group) for _, group in itertools.groupby(predictions, key=lambda p: p["db_id"])]
        for group in tqdm(groups, desc="databases"):
            for line in reselected_lines(generator, spider, group, decoding, str(args.source), repairs):
                handle.write(json.dumps(line) + "\n")
    metrics = score_to_folder(path, out, args.spider, args.split, generator.spec.name, None, args.workers)
    print(f"best of {args.k} from {args.source}: n = {metrics['n']}  EX {100 * metrics['ex']:.1f}%  -> {out}")


if __name__ == "__main__":
    main()
