"""Training throughput on CPU: shared-prefix packing vs plain trl SFTTrainer, same examples.

Both runs train the default model (Qwen2.5-Coder-0.5B-Instruct, LoRA, settings from the CPU
recipe) for exactly one epoch over the same Spider examples (whole databases, oversampled as
in production): once with shared-prefix packing (training/packing.py), once with trl's
standard prompt/completion path (no packing, no length grouping, ``--plain_batch_size``
examples a step). Each run is its own process, so its peak memory is its own. Prints
examples/s, example tokens/s (tokens the examples have unpacked: the same work for both),
tokens actually run through the model, step counts, peak RSS, and the ratios.
Not a test: numbers depend on the machine and on what else runs on it.

    python -m benchmarks.train_throughput [--examples 24] [--plain_batch_size 4] [--threads 2]
        [--recipe training/recipes/qwen2.5-coder-0.5b-cpu.yaml] [--model_name_or_path ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "training" / "recipes" / "qwen2.5-coder-0.5b-cpu.yaml"


def one_run(options, method: str) -> dict:
    """Train one epoch in this process; the measurements as a dict."""
    import torch

    from training.train import main, make_parser

    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory(prefix=f"throughput-{method}-") as output_dir:
        argv = [
            "--config", str(options.recipe),
            "--output_dir", output_dir,
            "--max_train_examples", str(options.examples),
            "--max_eval_examples", "0",
            "--num_train_epochs", "1",
            "--max_steps", "-1",
            "--eval_strategy", "no",
            "--save_strategy", "no",
            "--logging_steps", "1",
            "--prefix_packing", "true" if method == "packed" else "false",
            "--per_device_train_batch_size", "1" if method == "packed" else str(options.plain_batch_size),
            "--gradient_accumulation_steps", "1",
        ]  # fmt: skip
        if options.model_name_or_path:
            argv += ["--model_name_or_path", options.model_name_or_path]
        metrics = main(*make_parser().parse_args_and_config(args=argv), argv=argv)
    seconds = metrics["train_runtime"]
    return {
        "method": method,
        "steps": metrics["train_steps"],
        "examples": metrics["epoch_examples"],
        "seconds": seconds,
        "examples_per_s": metrics["epoch_examples"] / seconds,
        "example_tokens_per_s": metrics["epoch_unpacked_tokens"] / seconds,
        "model_tokens_per_s": metrics["epoch_tokens"] / seconds,
        "example_tokens": metrics["epoch_unpacked_tokens"],
        "model_tokens": metrics["epoch_tokens"],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "train_loss": metrics["train_loss"],
    }


def report(runs: dict[str, dict]) -> str:
    columns = ["steps", "examples", "seconds", "examples_per_s", "example_tokens_per_s", "model_tokens", "model_tokens_per_s", "peak_rss_gb", "train_loss"]
    lines = [f"{'':8s}" + "".join(f"{c:>22s}" for c in columns)]
    for method, run in runs.items():
        lines.append(f"{method:8s}" + "".join(f"{run[c]:22.3f}" if isinstance(run[c], float) else f"{run[c]:22d}" for c in columns))
    packed, plain = runs["packed"], runs["plain"]
    lines.append(
        f"packed / plain: {packed['examples_per_s'] / plain['examples_per_s']:.2f}x examples/s "
        f"(= example tokens/s), {packed['model_tokens'] / plain['model_tokens']:.3f}x the tokens through the model, "
        f"{packed['peak_rss_gb'] / plain['peak_rss_gb']:.2f}x peak memory"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24, help="Spider train examples (whole databases), before oversampling")
    parser.add_argument("--plain_batch_size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--model_name_or_path", default=None, help="default: the recipe's model")
    parser.add_argument("--one", choices=["packed", "plain"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        print("RESULT " + json.dumps(one_run(options, options.one)), flush=True)
        return
    runs = {}
    for method in ("packed", "plain"):
        command = [sys.executable, "-m", "benchmarks.train_throughput", "--one", method] + sys.argv[1:]
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
        runs[method] = json.loads(next(line[7:] for line in output.splitlines() if line.startswith("RESULT ")))
        print(f"{method}: {json.dumps(runs[method])}", flush=True)
    from text2sql import cpu

    print(cpu.summary())
    print(report(runs))


if __name__ == "__main__":
    main()
