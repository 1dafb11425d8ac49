"""A real training run on a tiny model (random 2-layer Llama, SmolLM2's real tokenizer) and
real Spider examples, on CPU: loss falls, LoRA weights change, the adapter saves, names its
Hub base, reloads and generates; resume; the standard trl path; the QLoRA path.

    python -m pytest tests/test_train.py -v
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import SPIDER, TINY_HUB_ID as HUB_ID
from training.data import DataArguments, build
from training.packing import PrefixPackCollator, pack_examples, packed_loss, tokenize_example
from training.train import expand_push_to_hub, main, make_parser


pytestmark = pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")

SMOKE = Path(__file__).resolve().parents[1] / "training" / "recipes" / "smoke.yaml"


def smoke_argv(output_dir: Path, *overrides: str) -> list[str]:
    """training.train's arguments for the smoke recipe on the tiny model (``tiny_registry``)."""
    return [
        "--config", str(SMOKE),
        "--model_name_or_path", HUB_ID,
        "--output_dir", str(output_dir),
        "--max_train_examples", "32",
        "--max_eval_examples", "8",
        "--lora_r", "8",
        "--learning_rate", "1e-2",
        *overrides,
    ]  # fmt: skip


def train(output_dir: Path, *overrides: str, callbacks=()) -> dict:
    argv = smoke_argv(output_dir, *overrides)
    return main(*make_parser().parse_args_and_config(args=argv), argv=argv, callbacks=callbacks)


def logged_losses(output_dir: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((output_dir / "loss_curve.json").read_text()) if "loss" in entry]


def test_training_lowers_the_loss_and_saves_a_reloadable_adapter(tmp_path, tiny_registry, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    metrics = train(out, "--max_steps", "8", "--save_steps", "4")
    # A random 2-layer model with hidden size 32 and a frozen LM head can only move its
    # logits a little (the loss starts at ln(vocab) = 10.80): the falls are small but steady.
    losses = logged_losses(out)
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    assert metrics["eval_loss"] < losses[0]

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID  # the Hub id, not the local folder
    assert config["target_modules"] and config["r"] == 8
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: training moved it
    for name in ("recipe.yaml", "train_results.json", "eval_results.json", "train.log", "tokenizer.json"):
        assert (out / name).is_file(), name
    assert "prefix_packing: true" in (out / "recipe.yaml").read_text()
    assert "shared-prefix packing, train:" in (out / "train.log").read_text()

    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    inputs = tokenizer("SELECT count(*) FROM", return_tensors="pt")
    with torch.no_grad():
        base_logits = base(**inputs).logits
        model = PeftModel.from_pretrained(base, out).eval()
        tuned_logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert not torch.allclose(base_logits, tuned_logits)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 5

    # On a training pack, the adapter's loss is below the base model's.
    records = build(DataArguments(max_train_examples=32, max_eval_examples=8), seed=42).train
    group = [r for r in records if r["db_id"] == records[0]["db_id"]][:6]
    examples = [{**tokenize_example(tokenizer, r["prompt"], r["completion"]), "group": r["db_id"]} for r in group]
    pack = PrefixPackCollator(tokenizer.pad_token_id)(pack_examples(examples, 100_000))
    with torch.no_grad():
        tuned = packed_loss(model, pack)[0]
        with model.disable_adapter():
            untuned = packed_loss(model, pack)[0]
    assert tuned < untuned - 0.1


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_registry):
    out = tmp_path / "run"
    train(out, "--max_steps", "4", "--save_steps", "2")
    assert (out / "checkpoint-4").is_dir()
    train(out, "--max_steps", "6", "--save_steps", "2", "--resume")
    steps = [entry["step"] for entry in json.loads((out / "loss_curve.json").read_text()) if "loss" in entry]
    assert steps == [1, 2, 3, 4, 5, 6]  # 1-4 restored from the checkpoint's state, 5-6 new
    tokens = logged(out, "num_tokens")
    assert tokens[4] < tokens[5] < tokens[6]  # the count goes on after the resume, not from zero
    assert "resuming from" in (out / "train.log").read_text() and "checkpoint-4" in (out / "train.log").read_text()
    if sys.platform.startswith("linux"):  # glibc: freed activations go back to the system after each step
        assert "(malloc_trim)" in (out / "train.log").read_text()


def logged(output_dir: Path, key: str) -> dict[int, float]:
    return {e["step"]: e[key] for e in json.loads((output_dir / "loss_curve.json").read_text()) if key in e}


def test_a_fresh_machine_resumes_from_the_committed_milestone(tmp_path, tiny_registry):
    """A milestone (no optimizer state, adapter in bf16) is all a new machine has: from it the
    run continues at the same step, on the same learning-rate schedule."""
    schedule = ("--max_steps", "6", "--save_steps", "2", "--lr_scheduler_type", "cosine", "--warmup_steps", "1")
    milestones = tmp_path / "milestones"
    first_machine = tmp_path / "first"
    train(first_machine, *schedule, "--milestone_dir", str(milestones), "--milestone_steps", "4")
    milestone = milestones / "checkpoint-4"
    assert sorted(p.name for p in milestones.iterdir()) == ["checkpoint-4"]
    assert not list(milestone.glob("optimizer*")) and (milestone / "data_fingerprint.txt").is_file()
    assert {w.dtype for w in load_file(milestone / "adapter_model.safetensors").values()} == {torch.bfloat16}

    second_machine = tmp_path / "second"  # nothing but the milestone
    train(second_machine, *schedule, "--milestone_dir", str(milestones), "--resume")
    assert "resuming from milestone" in (second_machine / "train.log").read_text()
    rates, expected = logged(second_machine, "learning_rate"), logged(first_machine, "learning_rate")
    assert sorted(rates) == [1, 2, 3, 4, 5, 6]  # 1-4 from the milestone's state, 5-6 trained here
    assert [rates[s] for s in (5, 6)] == pytest.approx([expected[s] for s in (5, 6)])
    assert (second_machine / "adapter_model.safetensors").is_file()


def test_resuming_on_other_data_is_refused(tmp_path, tiny_registry):
    out = tmp_path / "run"
    train(out, "--max_steps", "2", "--save_steps", "2")
    with pytest.raises(SystemExit, match="other data"):
        train(out, "--max_steps", "4", "--save_steps", "2", "--max_train_examples", "16", "--resume")


def test_progress_lines_say_the_pace_and_the_time_left(tmp_path, tiny_registry):
    out = tmp_path / "run"
    train(out, "--max_steps", "3")
    steps = [json.loads(line.split(" INFO ", 1)[1]) for line in (out / "train.log").read_text().splitlines()
             if '"loss"' in line and " training INFO " in line]  # fmt: skip
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(s["step_s"] >= 0 and "num_tokens" in s for s in steps)
    assert steps[-1]["eta_h"] == 0 and steps[0]["eta_h"] >= 0


def test_the_standard_trl_path_still_trains(tmp_path, tiny_registry):
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):  # as benchmarks/gpu_recipes.py times steps
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    out, counter = tmp_path / "run", StepCounter()
    train(out, "--max_steps", "3", "--prefix_packing", "false", "--per_device_train_batch_size", "2", callbacks=[counter])
    assert len(logged_losses(out)) == 3 and counter.steps == 3
    assert "shared-prefix packing" not in (out / "train.log").read_text()
    assert (out / "adapter_model.safetensors").is_file()


class LayoutWatch:
    """A TrainerCallback noting, at every step and evaluation, any 4-bit layer bitsandbytes
    has repacked for its inference kernel (a layout training can't compute gradients through)."""

    def __init__(self):
        from transformers import TrainerCallback

        watch = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, model=None, **kwargs):
                watch.check(model, f"step {state.global_step + 1}")

            def on_evaluate(self, args, state, control, model=None, **kwargs):
                watch.check(model, f"evaluation at step {state.global_step}")

        self.callback, self.seen, self.repacked = Callback(), [], []

    def check(self, model, when: str) -> None:
        from bitsandbytes.nn import Linear4bit

        layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
        assert layers, "no 4-bit layers"
        self.seen.append(when)
        self.repacked += [when for m in layers if getattr(m.weight.quant_state, "packing_format_for_cpu", False)]


def qlora_steps_with_evaluation(out: Path, *overrides: str) -> tuple[dict, LayoutWatch]:
    """Two 4-bit training steps with an evaluation after each (train -> eval -> train)."""
    watch = LayoutWatch()
    metrics = train(
        out, "--max_steps", "2", "--quantize", "4bit", "--eval_strategy", "steps", "--eval_steps", "1",
        *overrides, callbacks=[watch.callback],
    )  # fmt: skip
    return metrics, watch


def assert_trained_in_4bit(out: Path, metrics: dict) -> None:
    log = (out / "train.log").read_text()
    assert f"qlora-{'cuda' if torch.cuda.is_available() else 'cpu'}" in log and "4-bit NF4" in log
    losses = logged_losses(out)
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)  # finite, not NaN
    assert metrics["eval_loss"] == metrics["eval_loss"] and metrics["eval_loss"] > 0
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in name and w.abs().sum() > 0 for name, w in weights.items())


def test_qlora_path_trains(tmp_path, tiny_registry):
    """--quantize 4bit: bitsandbytes NF4 base (double quant), LoRA adapters on top, trained and
    evaluated in turn; on the CPU here, on the GPU where there is one (tests/test_cuda.py checks
    more there)."""
    out = tmp_path / "run"
    metrics, watch = qlora_steps_with_evaluation(out, "--max_train_examples", "8", "--max_eval_examples", "2")
    assert_trained_in_4bit(out, metrics)
    assert watch.seen == ["step 1", "evaluation at step 1", "step 2", "evaluation at step 2"]
    assert watch.repacked == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="bitsandbytes' CPU kernels")
def test_qlora_on_cpu_keeps_its_training_layout_where_bitsandbytes_has_its_avx512_bf16_kernel(
    tmp_path, tiny_registry, monkeypatch
):
    """bitsandbytes decides per layer, when the layer is built, whether to repack it for its
    AVX512-BF16 inference kernel: here it is told it may, whatever this CPU is, so the branch
    AVX512-BF16 machines take runs on every machine. Training must still evaluate and go on
    training in its own layout (repacked layers break gradients, and narrow ones crash)."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    out = tmp_path / "run"
    metrics, watch = qlora_steps_with_evaluation(out, "--max_train_examples", "8", "--max_eval_examples", "2")
    assert_trained_in_4bit(out, metrics)
    assert len(watch.seen) == 4 and watch.repacked == []


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="bitsandbytes' CPU kernels")
def test_qlora_trains_and_evaluates_the_embedded_qwen_on_cpu(tmp_path, monkeypatch):
    """The real shapes (Qwen2.5-Coder-0.5B, 4-bit NF4): two training steps and an evaluation
    after each, on whatever CPU runs the suite (on AVX512-BF16 CPUs, where bitsandbytes would
    repack the layers, too)."""
    monkeypatch.setenv("TEXT2SQL_SPIDER_DIR", str(SPIDER))
    out = tmp_path / "run"
    metrics, watch = qlora_steps_with_evaluation(
        out, "--model_name_or_path", "qwen2.5-coder-0.5b", "--max_train_examples", "4", "--max_eval_examples", "1",
        "--pack_max_tokens", "1024", "--lora_r", "4",
    )  # fmt: skip
    assert_trained_in_4bit(out, metrics)
    assert watch.repacked == []


def test_push_to_hub_takes_a_repo_name():
    assert expand_push_to_hub(["--push_to_hub", "me/repo", "--x", "1"]) == [
        "--push_to_hub", "true", "--hub_model_id", "me/repo", "--x", "1"
    ]  # fmt: skip
    assert expand_push_to_hub(["--push_to_hub", "true"]) == ["--push_to_hub", "true"]

