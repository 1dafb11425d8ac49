"""bf16 against fp32 on this CPU: greedy latency of the fine-tuned 0.5B (``--model``), and
training steps of the CPU recipe, each measured both ways in one run, with the CPU kind recorded.

bf16 is native on CPUs with AVX512-BF16 or AMX (``text2sql.cpu``) and emulated, ~6x slower
than fp32, on AVX2-only ones: that is why ``TEXT2SQL_DTYPE=auto`` and the CPU training backend
choose by CPU kind. This measures what the choice is worth where bf16 is native.

* Latency: the registry model (``--model``) on the transformers engine (llama.cpp runs its
  quantized weights whatever the CPU) answers the same Spider dev questions (one per database, so each one
  pays its schema prefill, as a new visitor does) through ``text2sql.pipeline.ask``, loaded once
  with ``TEXT2SQL_DTYPE=bfloat16`` and once with ``float32``.
* Training: ``training.train`` with the CPU recipe on the same packs (same examples, seed and
  packing) for a few steps, with bf16 autocast and bf16 weights as the ``lora-cpu`` backend
  picks them on such a CPU, and in fp32 (``TEXT2SQL_CPU_FLAGS`` without bf16: the AVX2 branch);
  optionally bf16 without activation checkpointing too. Seconds per step are the median over
  the steps after the first.

Each measurement runs in its own process (its own peak memory), one after the other. Not a
test: the figures depend on the machine and on what else runs on it (the load average is
printed). Writes a JSON record next to the printout with ``--out``.

    python -m benchmarks.cpu_dtypes                                  # 10 questions, 3 steps a run
    python -m benchmarks.cpu_dtypes --questions 20 --steps 4 --train bf16,fp32,bf16-no-checkpointing \\
        --out benchmarks/results/cpu_dtypes_avx512_bf16.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "training" / "recipes" / "qwen2.5-coder-0.5b-cpu.yaml"
NO_NATIVE_BF16 = "avx2,avx512f"
TRAIN_CONFIGS = {
    # name: (environment, extra recipe overrides)
    "bf16": ({}, []),
    "fp32": ({"TEXT2SQL_CPU_FLAGS": NO_NATIVE_BF16}, []),
    "bf16-no-checkpointing": ({}, ["--activation_checkpointing", "false"]),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_run(questions: int, model: str | None) -> dict:
    """Answer ``questions`` dev questions, one per database, with the dtype the environment sets."""
    from text2sql.engine import load_generator
    from text2sql.pipeline import Database, ask
    from text2sql.spider import Spider

    spider = Spider()
    first_per_database = {}
    for example in spider.examples("dev"):
        if spider.has_database(example.db_id):
            first_per_database.setdefault(example.db_id, example)
    examples = list(first_per_database.values())[:questions]
    started = time.perf_counter()
    generator = load_generator(model)
    load_s = time.perf_counter() - started
    times, tokens = [], 0
    for example in examples:
        started = time.perf_counter()
        answer = ask(Database.from_file(spider.db_path(example.db_id)), example.question, model=model)
        times.append(time.perf_counter() - started)
        tokens += len(generator.tokenizer(answer.generation.raw, add_special_tokens=False)["input_ids"])
    return {
        "dtype": str(generator.base.dtype).removeprefix("torch."),
        "model": generator.spec.name,
        "questions": len(examples),
        "load_s": round(load_s, 2),
        "ask_p50_s": round(percentile(times, 0.5), 3),
        "ask_p95_s": round(percentile(times, 0.95), 3),
        "ask_mean_s": round(statistics.mean(times), 3),
        "new_tokens_per_s": round(tokens / sum(times), 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }


def train_run(steps: int, examples: int, overrides: list[str]) -> dict:
    """Train the CPU recipe for ``steps`` steps; each step's seconds and tokens."""
    from transformers import TrainerCallback

    from training.train import main, make_parser

    clock: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            clock[-1] = time.perf_counter() - clock[-1]

    with tempfile.TemporaryDirectory(prefix="cpu-dtypes-") as output_dir:
        argv = [
            "--config", str(RECIPE), "--output_dir", output_dir, "--max_steps", str(steps),
            "--max_train_examples", str(examples), "--max_eval_examples", "0",
            "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1", *overrides,
        ]  # fmt: skip
        metrics = main(*make_parser().parse_args_and_config(args=argv), argv=argv, callbacks=[StepClock()])
        log = (Path(output_dir) / "train.log").read_text()
    backend = next(line for line in log.splitlines() if " backend " in line).split(" backend ", 1)[1]
    later = clock[1:] or clock
    return {
        "backend": backend,
        "step_s": [round(s, 1) for s in clock],
        "median_step_s_after_first": round(statistics.median(later), 1),
        "tokens_per_step": round(metrics["epoch_tokens"] / metrics["epoch_rows"]),
        "train_loss": round(metrics["train_loss"], 4),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }


def in_child(kind: str, env: dict, options, extra: list[str]) -> dict:
    """One measurement in a fresh process with ``env`` added; its result."""
    command = [sys.executable, "-m", "benchmarks.cpu_dtypes", "--child", kind, *sys.argv[1:], *extra]
    output = subprocess.run(
        command, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **env}
    ).stdout
    return json.loads(next(line[7:] for line in output.splitlines() if line.startswith("RESULT ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10, help="dev questions, one per database")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-spider", help="registry model (one that runs on transformers)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per configuration")
    parser.add_argument("--examples", type=int, default=96, help="Spider train examples (whole databases) to pack")
    parser.add_argument("--train", default="bf16,fp32", help=f"training configurations, from {sorted(TRAIN_CONFIGS)}")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the record as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", nargs=argparse.REMAINDER, default=[], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child == "latency":
        print("RESULT " + json.dumps(latency_run(options.questions, options.model)), flush=True)
        return
    if options.child == "train":
        print("RESULT " + json.dumps(train_run(options.steps, options.examples, options.overrides)), flush=True)
        return

    from text2sql import cpu

    if not cpu.has_fast_bf16():
        print(f"Note: {cpu.summary()} has no native bf16: bf16 figures here are PyTorch's emulation.")
    record = {"cpu": cpu.describe(), "load_average_at_start": round(os.getloadavg()[0], 2), "latency": {}, "train": {}}
    print(cpu.summary(), f"| load average {record['load_average_at_start']}", flush=True)
    if not options.skip_latency:
        for dtype in ("bfloat16", "float32"):
            env = {"TEXT2SQL_DTYPE": dtype, "TEXT2SQL_ENGINE": "transformers"}
            record["latency"][dtype] = in_child("latency", env, options, [])
            print(f"latency {dtype}: {json.dumps(record['latency'][dtype])}", flush=True)
        bf16, fp32 = record["latency"]["bfloat16"], record["latency"]["float32"]
        record["latency"]["fp32_over_bf16_p50"] = round(fp32["ask_p50_s"] / bf16["ask_p50_s"], 2)
    for name in options.train.split(","):
        env, overrides = TRAIN_CONFIGS[name]
        record["train"][name] = in_child("train", env, options, ["--overrides", *overrides])
        print(f"train {name}: {json.dumps(record['train'][name])}", flush=True)
    if {"bf16", "fp32"} <= set(record["train"]):
        record["train"]["fp32_over_bf16_step"] = round(
            record["train"]["fp32"]["median_step_s_after_first"] / record["train"]["bf16"]["median_step_s_after_first"], 2
        )
    record["load_average_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps({k: record[k] for k in ("latency", "train")}, indent=1))
    if options.out:
        options.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {options.out}")


if __name__ == "__main__":
    main()
