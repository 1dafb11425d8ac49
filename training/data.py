"""Spider -> conversational prompt/completion records for SFT, and dataset statistics.

Each example becomes ``{"prompt": build_messages(schema, question), "completion":
build_completion(sql), "db_id", "hardness"}``: the prompt is built exactly as the app
builds it at inference (same schema reader with sample values, same fitting to the same
token budget, same builder), so the model is trained on what it will be asked. Databases
missing from the local copy keep their ``tables.json`` schema (no sample values).

* Validation: whole databases are held out (no database in both splits), ~``validation_fraction``
  of the examples, chosen with the seed.
* Oversampling of the training split: hard x2, extra x3, any set operation
  (UNION/INTERSECT/EXCEPT, anywhere in the query) x4, the largest factor applying.
  Fractional factors add the last copy with that probability (seeded).
* Reworded questions (``rewordings_file``, JSON lines checked by ``text2sql.spider.read_rewordings``):
  an example with a rewording is trained in both wordings. An example with one copy gets the
  rewording as a second; one with k > 1 copies has k // 2 of them reworded (the epoch barely grows).
* Schema noise (``schema_noise_share``, ``training.schema_noise``): that share of each training
  database's records is shown with a renamed / trimmed / padded schema variant, each variant
  shared by about ``schema_noise_group_size`` records so that they still pack under one prefix
  (a record's ``group``). Held-out records are never reworded or noised.

    python -m training.data                                   # counts, hardness buckets, oversampling
    python -m training.data --tokenizer qwen2.5-coder-0.5b --tokenizer smollm2-135m   # + token lengths
    python -m training.data --tokenizer qwen2.5-coder-0.5b --pack_max_tokens 3072 \
        --config training/recipes/qwen2.5-coder-0.5b-cpu.yaml      # a recipe's data (noise, rewordings)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sqlglot
from tqdm.auto import tqdm

from text2sql.hardness import LEVELS, hardness
from text2sql.prompt import Messages, build_completion, build_messages, fit_schema
from text2sql.schema import Schema
from text2sql.settings import get_settings
from text2sql.spider import Example, Spider, read_rewordings
from text2sql.spider_sql import SET_OPERATIONS
from training import schema_noise


@dataclasses.dataclass
class DataArguments:
    """Where the Spider examples come from and how the training mix is built."""

    spider_dir: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Spider folder (tables.json, *.json, database/). Default: $TEXT2SQL_SPIDER_DIR or ../shared/spider."},
    )
    dataset_name: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Read the questions from this Hub dataset (e.g. xlangai/spider, needs network) instead of the "
            "folder's json files. Schemas still come from the folder: the Hub dataset has none."
        },
    )
    train_splits: list[str] = dataclasses.field(
        default_factory=lambda: ["train_spider", "train_others"],
        metadata={"help": "Spider splits to train on (train_spider 7000 + train_others 1659 = 8659)."},
    )
    validation_fraction: float = dataclasses.field(
        default=0.05, metadata={"help": "Share of the examples held out for eval, as whole databases."}
    )
    max_eval_examples: int | None = dataclasses.field(
        default=None, metadata={"help": "Cap on held-out examples actually evaluated (eval costs CPU time)."}
    )
    max_train_examples: int | None = dataclasses.field(
        default=None,
        metadata={"help": "Train on whole databases, in seeded order, up to this many examples (before oversampling)."},
    )
    oversample_hard: float = dataclasses.field(default=2.0, metadata={"help": "Copies of each 'hard' example."})
    oversample_extra: float = dataclasses.field(default=3.0, metadata={"help": "Copies of each 'extra' example."})
    oversample_set_ops: float = dataclasses.field(
        default=4.0, metadata={"help": "Copies of each example with UNION/INTERSECT/EXCEPT (largest factor wins)."}
    )
    max_prompt_tokens: int = dataclasses.field(
        default_factory=lambda: get_settings().max_prompt_tokens,
        metadata={"help": "Prompt budget, as the app's: longer schemas are fitted exactly as at inference."},
    )
    rewordings_file: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "JSON lines {id (train split), db_id, question, reworded}: those examples are also trained "
            "reworded (one copy added, or k // 2 of k oversampled copies reworded). Must not touch held-out databases."
        },
    )
    schema_noise_share: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Share of each training database's records shown with a noised schema variant (0: off)."},
    )
    schema_noise_kinds: list[str] = dataclasses.field(
        default_factory=lambda: list(schema_noise.KINDS),
        metadata={"help": "What a variant does: rename (checked by execution), drop (unused columns), distract (borrowed table/columns)."},
    )
    schema_noise_group_size: int = dataclasses.field(
        default=24, metadata={"help": "Records per schema variant (about a pack, so variants cost few extra prefixes)."}
    )


# ---------------------------------------------------------------------------
# Examples


def load_examples(spider: Spider, splits: list[str], dataset_name: str | None = None) -> list[Example]:
    """Examples of ``splits``, from the Spider folder or (``dataset_name``) from the Hub."""
    if dataset_name:
        return _hub_examples(dataset_name, splits)
    return [example for split in splits for example in spider.examples(split)]


def _hub_examples(dataset_name: str, splits: list[str]) -> list[Example]:
    """The Hub copy (xlangai/spider) has ``train`` (= train_spider) and ``validation`` (= dev)."""
    from datasets import load_dataset

    hub_split = {"train_spider": "train", "dev": "validation"}
    missing = [s for s in splits if s not in hub_split]
    if missing:
        raise ValueError(f"{dataset_name} has no {missing}; use the Spider folder for those.")
    examples = []
    for split in splits:
        for i, row in enumerate(load_dataset(dataset_name, split=hub_split[split])):
            examples.append(Example(i, split, row["db_id"], row["question"].strip(), row["query"].strip()))
    return examples


def has_set_operation(sql: str) -> bool:
    return any(True for _ in sqlglot.parse_one(sql, read="sqlite").find_all(*SET_OPERATIONS))


def split_by_database(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): whole databases, in seeded order, until ``fraction`` of the examples."""
    databases = sorted({e.db_id for e in examples})
    random.Random(seed).shuffle(databases)
    held, count = set(), 0
    for db_id in databases:
        if count >= fraction * len(examples):
            break
        held.add(db_id)
        count += sum(e.db_id == db_id for e in examples)
    return [e for e in examples if e.db_id not in held], [e for e in examples if e.db_id in held]


def whole_databases(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` examples, taking whole databases in seeded order (for small runs
    that still have several questions per database)."""
    if limit is None or limit >= len(examples):
        return examples
    databases = sorted({e.db_id for e in examples})
    random.Random(seed).shuffle(databases)
    kept: list[Example] = []
    for db_id in databases:
        kept += [e for e in examples if e.db_id == db_id][: limit - len(kept)]
        if len(kept) >= limit:
            break
    return kept


# ---------------------------------------------------------------------------
# Hardness buckets and oversampling


@dataclasses.dataclass(frozen=True)
class Labelled:
    example: Example
    hardness: str
    set_operation: bool


def label(examples: list[Example]) -> list[Labelled]:
    return [Labelled(e, hardness(e.query), has_set_operation(e.query)) for e in tqdm(examples, desc="hardness", leave=False)]


def sampling_factor(item: Labelled, args: DataArguments) -> float:
    factors = [1.0, {"hard": args.oversample_hard, "extra": args.oversample_extra}.get(item.hardness, 1.0)]
    if item.set_operation:
        factors.append(args.oversample_set_ops)
    return max(factors)


def oversample(items: list[Labelled], args: DataArguments, seed: int) -> list[Labelled]:
    """Each item ``floor(f)`` times, plus once more with probability ``f - floor(f)``; shuffled."""
    rng = random.Random(seed)
    out = []
    for item in items:
        factor = sampling_factor(item, args)
        copies = math.floor(factor) + (rng.random() < factor - math.floor(factor))
        out += [item] * copies
    rng.shuffle(out)
    return out


def bucket_counts(items: list[Labelled]) -> dict[str, int]:
    counts = Counter(item.hardness for item in items)
    return {**{level: counts[level] for level in LEVELS}, "set_ops": sum(i.set_operation for i in items), "total": len(items)}


def format_buckets(before: dict[str, int], after: dict[str, int]) -> str:
    lines = [f"{'bucket':10s}{'before':>8s}{'after':>8s}"]
    lines += [f"{name:10s}{before[name]:8d}{after[name]:8d}" for name in before]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Rewordings and schema noise


def reworded(items: list[Labelled], spider: Spider, path: str, held_out: set[str], seed: int) -> tuple[list[Labelled], int]:
    """``items`` with the rewordings of ``path`` (ids of the ``train`` split) mixed in: an example
    with one copy gets a reworded second copy at a seeded place; one with k copies has k // 2 of
    them reworded. Returns the items and how many examples had a rewording."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"rewordings_file {path} does not exist (pass --rewordings_file '' to train without rewordings).")
    examples = spider.examples("train")
    rewordings = read_rewordings(path, examples)
    leaked = sorted({e.db_id for e in examples if e.id in rewordings} & held_out)
    if leaked:
        raise ValueError(f"{path} rewords questions of held-out databases {leaked}: they must stay unseen.")
    by_key = {(e.db_id, e.question, e.query): rewordings[e.id] for e in examples if e.id in rewordings}
    copies: dict[tuple, list[int]] = {}
    for position, item in enumerate(items):
        key = (item.example.db_id, item.example.question, item.example.query)
        if key in by_key:
            copies.setdefault(key, []).append(position)
    out, added = list(items), []
    for key, positions in copies.items():
        if len(positions) == 1:
            item = items[positions[0]]
            added.append(dataclasses.replace(item, example=dataclasses.replace(item.example, question=by_key[key])))
        for position in positions[len(positions) - len(positions) // 2 :]:
            out[position] = dataclasses.replace(items[position], example=dataclasses.replace(items[position].example, question=by_key[key]))
    rng = random.Random(f"rewordings:{seed}")
    for item in added:
        out.insert(rng.randrange(len(out) + 1), item)
    return out, len(copies)


@dataclasses.dataclass
class Noised:
    schemas: dict[int, tuple[str, Schema]]
    """Position of a record -> (its group, the schema variant it is shown with)."""
    queries: dict[int, str]
    """Position -> its gold query in the variant (renamed names)."""
    variants: int
    failed: int
    """Records whose renamed query failed the execution check (shown with the original schema)."""


def noise_schemas(spider: Spider, items: list[Labelled], args: DataArguments, seed: int) -> Noised:
    """Schema variants for ``args.schema_noise_share`` of each database's records (seeded),
    each shared by about ``schema_noise_group_size`` of them; distractors come from the
    other databases in ``items``."""
    rng = random.Random(f"schema-noise:{seed}")
    kinds = tuple(args.schema_noise_kinds)
    unknown = set(kinds) - set(schema_noise.KINDS)
    if unknown:
        raise ValueError(f"Unknown schema_noise_kinds {sorted(unknown)}; choose from {list(schema_noise.KINDS)}.")
    by_db: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        by_db.setdefault(item.example.db_id, []).append(position)
    samples = get_settings().sample_values
    noised = Noised({}, {}, 0, 0)
    for db_id, positions in sorted(by_db.items()):
        count = round(args.schema_noise_share * len(positions))
        if not count:
            continue
        chosen = sorted(rng.sample(positions, count))
        groups = max(1, round(count / args.schema_noise_group_size))
        donors = [spider.schema(other, samples) for other in sorted(by_db) if other != db_id]
        db_path = spider.db_path(db_id) if spider.has_database(db_id) else None
        for number in range(groups):
            members = chosen[number::groups]
            queries = {p: items[p].example.query for p in members}
            variant = schema_noise.make_variant(spider.schema(db_id, samples), queries, db_path, kinds, donors, rng)
            noised.variants += 1
            noised.failed += len(variant.failed)
            for position, query in variant.queries.items():
                noised.schemas[position] = (f"{db_id}~{number + 1}", variant.schema)
                noised.queries[position] = query
    return noised


# ---------------------------------------------------------------------------
# Records


def prompt_token_counter(tokenizer) -> Callable[[Messages], int]:
    """The app's prompt length measure (``TransformersGenerator.count_tokens``)."""

    def count(messages: Messages) -> int:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def to_record(
    spider: Spider,
    item: Labelled,
    count_tokens: Callable[[Messages], int] | None,
    max_prompt_tokens: int,
    variant: tuple[str, Schema] | None = None,
) -> dict:
    """The prompt/completion record of ``item``, over its database's schema or over
    ``variant`` = (group, schema). ``group`` is what shared-prefix packing groups by."""
    example = item.example
    group, schema = variant or (example.db_id, spider.schema(example.db_id, get_settings().sample_values))
    if count_tokens is not None:
        schema, _ = fit_schema(schema, example.question, count_tokens, max_prompt_tokens)
    return {
        "prompt": build_messages(schema, example.question),
        "completion": build_completion(example.query),
        "db_id": example.db_id,
        "group": group,
        "hardness": item.hardness,
    }


@dataclasses.dataclass
class SpiderSFT:
    train: list[dict]
    eval: list[dict]
    report: str
    """What was built, for the run log."""


def build(args: DataArguments, seed: int, tokenizer=None) -> SpiderSFT:
    """Training records (oversampled, shuffled) and held-out records, both prompt/completion.
    With a tokenizer, prompts are fitted to ``max_prompt_tokens`` as the app fits them."""
    spider = Spider(args.spider_dir)
    examples = load_examples(spider, args.train_splits, args.dataset_name)
    train, held_out = split_by_database(examples, args.validation_fraction, seed)
    train = whole_databases(train, args.max_train_examples, seed)
    held_out = whole_databases(held_out, args.max_eval_examples, seed)
    labelled = label(train)
    mixed = oversample(labelled, args, seed)
    extras = []
    if args.rewordings_file:
        mixed, count = reworded(mixed, spider, args.rewordings_file, {e.db_id for e in held_out}, seed)
        extras.append(f"rewordings from {args.rewordings_file}: {count} examples also trained reworded -> {len(mixed)} records")
    noised = Noised({}, {}, 0, 0)
    if args.schema_noise_share > 0:
        noised = noise_schemas(spider, mixed, args, seed)
        extras.append(
            f"schema noise ({', '.join(args.schema_noise_kinds)}; share {args.schema_noise_share:g}, "
            f"~{args.schema_noise_group_size} records a variant): {len(noised.schemas)} records in {noised.variants} variants; "
            f"{noised.failed} renamed queries failed the execution check and keep the original schema"
        )
        mixed = [
            dataclasses.replace(item, example=dataclasses.replace(item.example, query=noised.queries[p])) if p in noised.queries else item
            for p, item in enumerate(mixed)
        ]
    count = prompt_token_counter(tokenizer) if tokenizer is not None else None
    records = [
        to_record(spider, item, count, args.max_prompt_tokens, noised.schemas.get(p))
        for p, item in enumerate(tqdm(mixed, desc="train records"))
    ]
    eval_records = [to_record(spider, item, count, args.max_prompt_tokens) for item in label(held_out)]
    missing = sorted({e.db_id for e in examples if not spider.has_database(e.db_id)})
    report = "\n".join(
        [
            f"Spider from {args.dataset_name or spider.root}: {len(examples)} examples ({', '.join(args.train_splits)}), "
            f"{len(set(e.db_id for e in examples))} databases; without a database file (tables.json schema): {missing}",
            f"held out: {len(held_out)} examples from {len({e.db_id for e in held_out})} databases "
            f"({', '.join(sorted({e.db_id for e in held_out}))})",
            f"train: {len(train)} examples -> {len(records)} after oversampling "
            f"(hard x{args.oversample_hard:g}, extra x{args.oversample_extra:g}, set ops x{args.oversample_set_ops:g}, seed {seed})",
            format_buckets(bucket_counts(labelled), bucket_counts(mixed)),
            *extras,
        ]
    )
    return SpiderSFT(train=records, eval=eval_records, report=report)


# ---------------------------------------------------------------------------
# Token lengths


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def token_stats(records: list[dict], tokenizer, max_length: int | None = None, pack_budgets: tuple[int, ...] = ()) -> str:
    """p50/p95/max of prompt, completion and total tokens, as trl tokenizes them, what a
    ``max_length`` would cut, and what shared-prefix packing at each budget gives."""
    from training.packing import PackStats, first_label_index, pack_examples, tokenize_example

    prompts, completions, totals, tokenized = [], [], [], []
    for record in tqdm(records, desc="tokenizing", leave=False):
        tokens = tokenize_example(tokenizer, record["prompt"], record["completion"])
        tokenized.append({**tokens, "group": record["group"]})
        start = first_label_index(tokens["labels"])
        prompts.append(start)
        completions.append(len(tokens["input_ids"]) - start)
        totals.append(len(tokens["input_ids"]))
    lines = [f"{'tokens':12s}{'p50':>7s}{'p95':>7s}{'max':>7s}{'mean':>8s}"]
    for name, values in (("prompt", prompts), ("completion", completions), ("total", totals)):
        lines.append(
            f"{name:12s}{statistics.median(values):7.0f}{percentile(values, .95):7d}{max(values):7d}{statistics.mean(values):8.1f}"
        )
    lines.append(f"sum of totals: {sum(totals)} tokens")
    if max_length is not None:
        cut = sum(t > max_length for t in totals)
        lines.append(f"max_length {max_length}: {cut} of {len(totals)} examples would be truncated")
    for budget in pack_budgets:
        lines.append(f"shared-prefix packs of <= {budget} tokens: {PackStats.of(pack_examples(tokenized, budget))}")
    return "\n".join(lines)


def load_tokenizer(name_or_path: str):
    """A tokenizer from a registry name (e.g. qwen2.5-coder-0.5b, resolved offline), a folder or a Hub id."""
    from transformers import AutoTokenizer

    from text2sql.registry import Registry, resolve_weights

    registry = Registry.load()
    if name_or_path in registry.names():
        name_or_path = str(resolve_weights(registry.get(name_or_path).base).path)
    return AutoTokenizer.from_pretrained(name_or_path)


def recipe_data_arguments(recipe: str | None, **overrides) -> DataArguments:
    """The ``DataArguments`` a recipe file sets (its other keys are the trainer's), with ``overrides``."""
    import yaml

    values = yaml.safe_load(Path(recipe).read_text()) if recipe else {}
    values |= {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(DataArguments)}
    return DataArguments(**{k: v for k, v in values.items() if k in fields})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="a training recipe (YAML): its data arguments are used")
    parser.add_argument("--spider_dir", default=None)
    parser.add_argument("--rewordings_file", default=None, help="overrides the recipe's ('' for none)")
    parser.add_argument("--schema_noise_share", type=float, default=None, help="overrides the recipe's (0: off)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tokenizer", action="append", default=[], help="registry name, folder or Hub id (repeatable)")
    parser.add_argument("--max_length", type=int, default=None, help="report how many examples this would truncate")
    parser.add_argument("--pack_max_tokens", type=int, action="append", default=[], help="report shared-prefix packing at this budget (repeatable)")
    options = parser.parse_args(argv)
    args = recipe_data_arguments(
        options.config,
        spider_dir=options.spider_dir,
        rewordings_file=options.rewordings_file,
        schema_noise_share=options.schema_noise_share,
    )
    for number, name in enumerate(options.tokenizer or [None]):
        tokenizer = load_tokenizer(name) if name else None
        data = build(args, options.seed, tokenizer)  # prompts fitted with this tokenizer's counts
        if number == 0:
            print(data.report)
        if tokenizer is None:
            continue
        for split, records in (("train (oversampled)", data.train), ("held out", data.eval)):
            print(f"\n{name}, {split}: {len(records)} records")
            print(token_stats(records, tokenizer, options.max_length, tuple(options.pack_max_tokens)))


if __name__ == "__main__":
    main()
