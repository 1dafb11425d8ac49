"""The GPU recipes' speed and GPU memory, on a CUDA GPU, with random weights of the real shapes.

Where this project borrows a GPU, the Hub can't be reached and the real weights are too large
to carry there. Speed and memory depend on a model's shapes, not its values, so this builds
each recipe's model from its published config with random weights (bf16, saved to a temporary
folder with the real Qwen2.5-Coder tokenizer from the shipped adapter) and trains it through
``training.train`` for a few steps: the recipe's backend (QLoRA 4-bit NF4 on CUDA), LoRA, its
packing and activation checkpointing, on real Spider packs. The losses mean nothing.

Prints, per recipe: the backend, seconds per step (median, the first step left out), tokens
per step and per second, peak GPU memory (allocated and reserved by PyTorch), packs in one
epoch and one epoch's time at that pace (packs differ in length: an estimate).

    python -m benchmarks.gpu_recipes                          # 0.5b and 7b, 12 steps each
    python -m benchmarks.gpu_recipes --recipes 7b --steps 20 --out results.json
    python -m benchmarks.gpu_recipes --recipes 0.5b --layers 2 --steps 3   # a quick check of this script
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "text2sql" / "adapters" / "qwen2.5-coder-0.5b-spider"
QWEN2 = {"model_type": "qwen2", "hidden_act": "silu", "max_position_embeddings": 32768, "rope_theta": 1_000_000.0,
         "rms_norm_eps": 1e-6, "bos_token_id": 151643, "eos_token_id": 151645, "use_sliding_window": False}
RECIPES = {
    # name: (recipe, the Hub model's config.json values that set its shapes)
    "0.5b": ("qwen2.5-coder-0.5b-cpu.yaml", {**QWEN2, "hidden_size": 896, "intermediate_size": 4864,
             "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
             "tie_word_embeddings": True}),
    "7b": ("qwen2.5-coder-7b-qlora.yaml", {**QWEN2, "hidden_size": 3584, "intermediate_size": 18944,
           "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
           "tie_word_embeddings": False}),
}  # fmt: skip


def save_random_model(shapes: dict, folder: Path, layers: int | None) -> int:
    """A model of these shapes with random bf16 weights, and the real tokenizer, in ``folder``;
    its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    shapes = {**shapes, "num_hidden_layers": layers or shapes["num_hidden_layers"]}
    config = AutoConfig.for_model(**shapes)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    return count


def step_clock():
    """A TrainerCallback that keeps each optimizer step's wall time."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)

    return StepClock()


def measure(name: str, steps: int, layers: int | None) -> dict:
    import torch

    from training.train import main, make_parser

    recipe, shapes = RECIPES[name]
    with tempfile.TemporaryDirectory(prefix=f"gpu-recipe-{name}-") as scratch:
        model_dir, run_dir = Path(scratch) / "model", Path(scratch) / "run"
        started = time.perf_counter()
        parameters = save_random_model(shapes, model_dir, layers)
        built_s = time.perf_counter() - started
        argv = [
            "--config", str(ROOT / "training" / "recipes" / recipe),
            "--model_name_or_path", str(model_dir),
            "--output_dir", str(run_dir),
            "--max_steps", str(steps),
            "--max_eval_examples", "0",
            "--eval_strategy", "no",
            "--save_strategy", "no",
            "--logging_steps", "1",
        ]  # fmt: skip
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        clock = step_clock()
        metrics = main(*make_parser().parse_args_and_config(args=argv), argv=argv, callbacks=[clock])
        backend = next(line.split("backend ", 1)[1] for line in (run_dir / "train.log").read_text().splitlines()
                       if " backend " in line)  # fmt: skip
    per_step = statistics.median(clock.seconds[1:] or clock.seconds)
    tokens_per_step = metrics["epoch_tokens"] / metrics["epoch_rows"]
    gib = 1024**3
    return {
        "recipe": recipe,
        "layers": layers or shapes["num_hidden_layers"],
        "parameters": parameters,
        "backend": backend,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "build_and_save_s": round(built_s, 1),
        "steps": len(clock.seconds),
        "s_per_step": round(per_step, 3),
        "tokens_per_step": round(tokens_per_step),
        "tokens_per_s": round(tokens_per_step / per_step),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 2) if torch.cuda.is_available() else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / gib, 2) if torch.cuda.is_available() else None,
        "epoch_packs": metrics["epoch_rows"],
        "epoch_examples": metrics["epoch_examples"],
        "epoch_hours_estimate": round(metrics["epoch_rows"] * per_step / 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per recipe (the first is left out)")
    parser.add_argument("--layers", type=int, default=None, help="build only this many layers (checks the script; not the model's speed)")
    parser.add_argument("--out", default=None, help="also write the results here as JSON")
    options = parser.parse_args()
    results = []
    for name in options.recipes:
        results.append(measure(name, options.steps, options.layers))
        print(json.dumps(results[-1]), flush=True)
    if options.out:
        Path(options.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
