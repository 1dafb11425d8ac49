"""Every training recipe parses with the installed trl/transformers (renamed fields fail here,
not after an hour of data preparation) and says what its comments promise.

    python -m pytest tests/test_recipes.py -v
"""

from pathlib import Path

import pytest

from training.backends import choose_backend
from training.train import make_parser


RECIPES = sorted((Path(__file__).resolve().parents[1] / "training" / "recipes").glob("*.yaml"))


def parse(recipe: Path):
    return make_parser().parse_args_and_config(args=["--config", str(recipe)])


def test_the_four_recipes_exist():
    assert {r.name for r in RECIPES} == {
        "smoke.yaml",
        "qwen2.5-coder-0.5b-cpu.yaml",
        "qwen2.5-coder-7b-qlora.yaml",
        "phi3-mini-qlora.yaml",
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.stem)
def test_recipe_parses(recipe):
    data, script, training, model = parse(recipe)
    if recipe.stem != "smoke":
        assert model.model_name_or_path.count("/") == 1  # a real Hub id, never a local path
    assert training.output_dir.startswith("runs/")
    assert script.prefix_packing
    # on everywhere: the CPU recipe ran without it (1.20x faster steps) until the kernel killed it
    # for memory at step 658 (docs/training.md)
    assert training.activation_checkpointing
    assert training.report_to in ([], ["none"], "none")
    assert 0 < data.validation_fraction < 0.2


@pytest.mark.parametrize("name", ["qwen2.5-coder-7b-qlora", "phi3-mini-qlora"])
def test_gpu_recipes_are_qlora(name, monkeypatch):
    data, script, training, model = parse(next(r for r in RECIPES if r.stem == name))
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    backend = choose_backend(script.quantize, script.use_unsloth)
    assert (backend.name, backend.quantize_4bit, backend.bf16) == ("qlora-cuda", True, True)
    assert 16 <= model.lora_r <= 64
    assert training.learning_rate == pytest.approx(2e-4)
    assert 1 <= training.num_train_epochs <= 2


def test_cpu_recipe_is_resumable_fp32_and_finite():
    data, script, training, model = parse(next(r for r in RECIPES if r.stem == "qwen2.5-coder-0.5b-cpu"))
    assert model.model_name_or_path == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert not training.bf16  # AVX2 CPUs emulate bf16; the backend enables it only where native
    assert training.num_train_epochs == 1 and training.max_steps == -1  # one whole epoch
    assert training.save_steps <= 10 and script.milestone_steps % training.save_steps == 0
    assert script.milestone_dir.startswith("training/milestones/")  # inside the repo: committed
    assert training.max_length >= 2754  # the longest Qwen-tokenized train example


def test_smoke_recipe_is_small():
    data, script, training, model = parse(next(r for r in RECIPES if r.stem == "smoke"))
    assert model.model_name_or_path == "tiny-random-llama"
    assert training.max_steps <= 5 and data.max_train_examples <= 32


def test_backends_on_cpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setenv("TEXT2SQL_CPU_FLAGS", "avx2")
    assert choose_backend("auto") == choose_backend("none")
    assert (choose_backend("auto").name, choose_backend("auto").bf16) == ("lora-cpu", False)
    assert (choose_backend("4bit").name, choose_backend("4bit").quantize_4bit) == ("qlora-cpu", True)
    for flags in ("avx2,avx512f,avx512_bf16", "avx2,avx512f,avx512_bf16,amx_tile,amx_bf16"):
        monkeypatch.setenv("TEXT2SQL_CPU_FLAGS", flags)
        assert choose_backend("auto").bf16 and choose_backend("4bit").bf16  # native bf16
    monkeypatch.setenv("TEXT2SQL_CPU_FLAGS", "avx2,avx512f")  # AVX-512 without BF16 emulates it
    assert not choose_backend("auto").bf16


def test_unsloth_only_with_cuda_and_when_installed(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "unsloth" else None)
    assert choose_backend("auto", use_unsloth=True).name == "unsloth"
    assert choose_backend("auto", use_unsloth=False).name == "qlora-cuda"
    assert choose_backend("none", use_unsloth=False).name == "lora-cuda"
