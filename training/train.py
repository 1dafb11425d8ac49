"""Fine-tune a code model on Spider with LoRA / QLoRA: trl's SFTTrainer, loss on the SQL only.

    python -m training.train --config training/recipes/smoke.yaml                  # seconds
    python -m training.train --config training/recipes/qwen2.5-coder-0.5b-cpu.yaml  # hours, 2 CPU cores
    python -m training.train --config training/recipes/qwen2.5-coder-0.5b-cpu.yaml --resume   # after a stop
    python -m training.train --config training/recipes/qwen2.5-coder-7b-qlora.yaml --push_to_hub you/repo
    accelerate launch --config_file training/accelerate/ddp.yaml --num_processes 8 -m training.train \
        --config training/recipes/qwen2.5-coder-7b-qlora.yaml                   # 8 GPUs (docs/training.md)

A recipe is a YAML file whose keys are fields of ``DataArguments`` (training/data.py),
``TrainArguments`` (below), trl's ``SFTConfig`` and trl's ``ModelConfig``; ``--key value``
overrides it. The backend (unsloth / QLoRA / LoRA, CUDA / CPU) is chosen from the machine and
printed. By default examples are trained with shared-prefix packing (training/packing.py);
``--prefix_packing false`` gives trl's standard prompt/completion path.

Writes to ``output_dir``: the LoRA adapter (adapter_config.json naming the real Hub base,
adapter_model.safetensors), the tokenizer, ``recipe.yaml`` (the values used),
``train_results.json`` / ``eval_results.json``, ``loss_curve.json`` (every logged step),
``train.log`` (the run log) and ``checkpoint-*`` folders for ``--resume``. Under ``accelerate
launch`` (several processes) the main process writes them; each process trains on its own
batches (training/accelerate/ holds the multi-GPU configs).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import resource
import sys
from pathlib import Path

import yaml

from training.data import DataArguments


logger = logging.getLogger("training")


@dataclasses.dataclass
class TrainArguments:
    """How to train, beyond what SFTConfig and ModelConfig say."""

    quantize: str = dataclasses.field(
        default="auto",
        metadata={"help": "auto (4-bit NF4 QLoRA on CUDA, none on CPU), 4bit (also on CPU, slowly), none", "choices": ["auto", "4bit", "none"]},
    )
    use_unsloth: bool = dataclasses.field(
        default=True,
        metadata={"help": "Use unsloth when it is installed, CUDA is present and prefix_packing is off."},
    )
    prefix_packing: bool = dataclasses.field(
        default=True,
        metadata={"help": "Shared-prefix packing: one schema prompt, many questions per row (same loss, far fewer tokens)."},
    )
    pack_max_tokens: int = dataclasses.field(
        default=2048, metadata={"help": "Longest pack (prefix + segments); a longer single example stays whole."}
    )
    resume: bool = dataclasses.field(
        default=False,
        metadata={"help": "Continue from the newest state found: the last checkpoint-* in output_dir, or the last "
                  "milestone in milestone_dir if that is newer (training/milestones.py); from the start if none."},
    )
    milestone_dir: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Where to keep the newest milestone (a checkpoint without optimizer state, adapter in bf16): "
                  "small enough to commit, so a fresh machine can --resume from it."},
    )
    milestone_steps: int = dataclasses.field(
        default=0, metadata={"help": "Write a milestone every this many steps (a multiple of save_steps; 0: never)."}
    )
    metrics_file: str | None = dataclasses.field(
        default=None, metadata={"help": "An evaluation metrics.json to put in the model card when pushing."}
    )


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((DataArguments, TrainArguments, SFTConfig, ModelConfig))


def expand_push_to_hub(argv: list[str]) -> list[str]:
    """``--push_to_hub REPO`` -> ``--push_to_hub true --hub_model_id REPO`` (TrainingArguments'
    ``push_to_hub`` is a bool, the repo its own field)."""
    out = list(argv)
    if "--push_to_hub" in out:
        i = out.index("--push_to_hub")
        value = out[i + 1] if i + 1 < len(out) else ""
        if value and not value.startswith("--") and value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            out[i : i + 2] = ["--push_to_hub", "true", "--hub_model_id", value]
    return out


def recipe_used(argv: list[str], configs: tuple) -> dict:
    """The recipe's keys plus any given on the command line, with the values in effect."""
    keys = []
    if "--config" in argv:
        keys += list(yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text()))
    keys += [a[2:].split("=")[0] for a in argv if a.startswith("--") and a != "--config"]
    used = {}
    for key in dict.fromkeys(keys):
        for config in configs:
            if hasattr(config, key):
                value = getattr(config, key)
                if isinstance(value, enum.Enum):
                    value = value.value
                used[key] = value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value)
                break
    return used


_run_log_handlers: list[logging.Handler] = []


def setup_run_log(output_dir: Path) -> None:
    """Our messages and the Trainer's to ``output_dir/train.log`` (appended: a resumed run
    continues the same log), ours also to stdout. Replaces the handlers of an earlier run in
    the same process."""
    import transformers

    output_dir.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(output_dir / "train.log")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    to_console = logging.StreamHandler(sys.stdout)
    to_console.setFormatter(logging.Formatter("%(message)s"))
    for name in ("training", "transformers.trainer"):
        for handler in _run_log_handlers:
            logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).addHandler(to_file)
        logging.getLogger(name).setLevel(logging.INFO)
    for handler in _run_log_handlers:
        handler.close()
    logger.addHandler(to_console)
    _run_log_handlers[:] = [to_file, to_console]
    transformers.logging.set_verbosity_info()
    transformers.logging.disable_default_handler()


def resident_gb() -> float:
    """This process's resident memory now (Linux; the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 1024**3
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_log_callback():
    import time

    from transformers import TrainerCallback

    class RunLog(TrainerCallback):
        """Every logged step (loss, lr, eval loss, tokens so far) into the run log as one JSON
        line, with the last step's seconds, the time left at the pace of the last 10 steps and
        the process's resident memory."""

        def __init__(self):
            self.step_seconds: list[float] = []
            self.started = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_seconds.append(time.monotonic() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            line = {"step": state.global_step, "epoch": state.epoch, **(logs or {})}
            if self.step_seconds and "loss" in line:
                recent = self.step_seconds[-10:]
                line["step_s"] = round(self.step_seconds[-1], 1)
                line["eta_h"] = round((state.max_steps - state.global_step) * sum(recent) / len(recent) / 3600, 2)
                line["rss_gb"] = round(resident_gb(), 2)
            logger.info(json.dumps(line))

    return RunLog()


def release_memory_callback():
    from transformers import TrainerCallback

    from training.backends import release_freed_memory

    class ReleaseFreedMemory(TrainerCallback):
        """After each step, the freed activations' pages back to the system (CPU training)."""

        def on_step_end(self, args, state, control, **kwargs):
            release_freed_memory()

    return ReleaseFreedMemory()


def datasets_for(script_args: TrainArguments, sft, tokenizer):
    """(train, eval, trainer class): packs for shared-prefix packing, else the records."""
    from datasets import Dataset
    from trl import SFTTrainer

    from training.packing import PackStats, PrefixPackedSFTTrainer, pack_examples, tokenize_example

    if not script_args.prefix_packing:
        return Dataset.from_list(sft.train), Dataset.from_list(sft.eval) if sft.eval else None, SFTTrainer

    def packs(records):
        tokenized = [{**tokenize_example(tokenizer, r["prompt"], r["completion"]), "group": r["group"]} for r in records]
        return pack_examples(tokenized, script_args.pack_max_tokens)

    train, held_out = packs(sft.train), packs(sft.eval)
    logger.info(f"shared-prefix packing, train: {PackStats.of(train)}")
    logger.info(f"shared-prefix packing, eval: {PackStats.of(held_out)}")
    return Dataset.from_list(train), Dataset.from_list(held_out) if held_out else None, PrefixPackedSFTTrainer


def epoch_stats(dataset) -> dict[str, int]:
    """What one epoch holds: examples, rows (packs or examples), tokens run through the
    model, and the tokens the same examples have unpacked."""
    tokens = sum(len(ids) for ids in dataset["input_ids"])
    packed = "num_examples" in dataset.column_names
    return {
        "epoch_examples": sum(dataset["num_examples"]) if packed else len(dataset),
        "epoch_rows": len(dataset),
        "epoch_tokens": tokens,
        "epoch_unpacked_tokens": sum(dataset["unpacked_tokens"]) if packed else tokens,
    }


def resume_from(trainer, script_args: TrainArguments, output_dir: Path) -> Path | None:
    """The checkpoint or milestone to continue from (None: from the start), checked against
    this run's data; adds the callbacks that keep checkpoints and milestones."""
    from training import milestones

    fingerprint = milestones.data_fingerprint(trainer.train_dataset)
    milestone_dir = Path(script_args.milestone_dir) if script_args.milestone_dir else None
    if script_args.milestone_steps and script_args.milestone_steps % trainer.args.save_steps:
        raise SystemExit(f"milestone_steps ({script_args.milestone_steps}) must be a multiple of save_steps ({trainer.args.save_steps}).")
    trainer.add_callback(milestones.Milestones(output_dir, milestone_dir, script_args.milestone_steps, fingerprint))
    checkpoint = milestones.resume_point(output_dir, milestone_dir) if script_args.resume else None
    existing = milestones.newest_checkpoint(output_dir)
    if existing and not script_args.resume:
        logger.info(f"{output_dir} already has {existing.name}: starting over (pass --resume to continue it)")
    if checkpoint is None:
        logger.info("starting from the base model")
        return None
    milestones.check_fingerprint(checkpoint, fingerprint)
    if milestones.is_milestone(checkpoint):
        trainer.add_callback(milestones.RestoreSchedule(checkpoint))
        logger.info(f"resuming from milestone {checkpoint} (step {milestones.step_of(checkpoint)}; Adam's moments restart)")
    else:
        logger.info(f"resuming from {checkpoint}")
    return checkpoint


def log_processes(training_args, rows: int) -> None:
    """Under ``accelerate launch``: how many processes, and what fills an epoch's last batch."""
    if training_args.world_size == 1:
        return
    state = training_args.distributed_state
    logger.info(f"{training_args.world_size} processes ({state.distributed_type.value}, {state.backend}), each on its own batches")
    batch = training_args.world_size * training_args.per_device_train_batch_size
    if rows % batch and not training_args.dataloader_drop_last:
        logger.info(f"an epoch's {rows} rows in batches of {batch} across the processes: accelerate fills the last one "
                    "with rows from the epoch's start (one process would take a smaller last batch; "
                    "--dataloader_drop_last true leaves the remainder out)")


def final_evaluation(trainer) -> dict:
    """Eval metrics at the last step: from the log when the schedule already evaluated there
    (an eval pass costs minutes on a CPU), else a new pass."""
    last = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), None)
    if last is not None and last["step"] == trainer.state.global_step:
        return {key: value for key, value in last.items() if key.startswith("eval_")}
    return trainer.evaluate()


def main(
    data_args: DataArguments, script_args: TrainArguments, training_args, model_args, argv: list[str], callbacks=()
) -> dict:
    """Train as the recipe says; the train (and eval) metrics. ``callbacks``: more
    TrainerCallbacks (benchmarks/gpu_recipes.py times the steps with one)."""
    from training.backends import choose_backend, release_freed_memory

    # unsloth's attention kernels don't take the packing's 4D mask, and packing saves more
    # (~8x fewer tokens against unsloth's ~2x), so unsloth is only used without packing.
    use_unsloth = script_args.use_unsloth and not script_args.prefix_packing
    backend = choose_backend("4bit" if model_args.load_in_4bit else script_args.quantize, use_unsloth)
    from training import data
    from training.backends import load_model_and_tokenizer

    output_dir = Path(training_args.output_dir)
    main_process = training_args.process_index == 0  # under accelerate launch, the one that writes files
    if main_process:
        setup_run_log(output_dir)
    logger.info(f"backend {backend.describe()}")
    if not backend.device.startswith("cuda") and release_freed_memory():
        callbacks = (*callbacks, release_memory_callback())
        logger.info("freed heap memory goes back to the system after each step (malloc_trim)")
    if training_args.bf16 != backend.bf16:
        logger.info(f"bf16 autocast {'on' if backend.bf16 else 'off'} for this backend (the recipe said {training_args.bf16})")
        # mixed_precision is derived from bf16 when the config is built: keep them in step
        training_args.bf16 = backend.bf16
        training_args.mixed_precision = "bf16" if backend.bf16 else "no"
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    training_args.push_to_hub = False  # we publish adapter + our card in one commit at the end

    model, tokenizer, peft_config = load_model_and_tokenizer(
        model_args, backend, training_args.max_length or script_args.pack_max_tokens, training_args.seed
    )
    sft = data.build(data_args, training_args.seed, tokenizer)
    logger.info(sft.report)
    train_dataset, eval_dataset, trainer_class = datasets_for(script_args, sft, tokenizer)
    log_processes(training_args, len(train_dataset))
    if main_process:
        (output_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_used(argv, (data_args, script_args, training_args, model_args)), sort_keys=False))

    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[run_log_callback(), *callbacks],
    )
    stats = epoch_stats(trainer.train_dataset)
    logger.info(f"one epoch: {json.dumps(stats)}")
    checkpoint = resume_from(trainer, script_args, output_dir)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.save_model(str(output_dir))
    metrics = {**result.metrics, **stats, "train_steps": result.global_step}
    trainer.save_metrics("train", metrics)
    if eval_dataset is not None:
        evaluation = final_evaluation(trainer)
        trainer.save_metrics("eval", evaluation)
        metrics.update(evaluation)
    if not main_process:
        return metrics
    (output_dir / "loss_curve.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    logger.info(f"adapter, tokenizer and metrics in {output_dir}; peak memory (RSS) of this process {peak:.1f} GB")
    if push_repo:
        from training.push import publish, stage

        metrics_files = [script_args.metrics_file] if script_args.metrics_file else []
        publish(stage(output_dir, output_dir / "hub", metrics_files, push_repo), push_repo)
    return metrics


def import_unsloth_first() -> None:
    """unsloth patches transformers, trl and peft, so it must be imported before them."""
    import importlib.util

    import torch

    if importlib.util.find_spec("unsloth") is not None and torch.cuda.is_available():
        import unsloth  # noqa: F401


if __name__ == "__main__":
    import_unsloth_first()
    argv = expand_push_to_hub(sys.argv[1:])
    main(*make_parser().parse_args_and_config(args=argv), argv=argv)
