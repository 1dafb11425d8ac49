"""Training as several processes with accelerate: two CPU processes (gloo) train the smoke recipe
as one process does with the same global batch, and only the main process writes the run's
files; the multi-GPU configs in training/accelerate/ load with accelerate's own launcher code,
give the processes what training/backends.py expects, and are the ones docs/training.md shows.

    python -m pytest tests/test_accelerate.py -v

``accelerate launch --cpu --num_processes 2`` starts ONE process in accelerate 1.15 (several
CPU processes need mpirun and ``--mpirun_hostfile``), so the test uses accelerate's torchrun
launcher (``--multi_gpu``, the one the DDP config uses) with the GPUs hidden and
``--use_cpu true``: two processes on the CPU, gloo between them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import SPIDER
from tests.test_train import smoke_argv, train
from text2sql.llama_server import free_port


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "training" / "accelerate").glob("*.yaml"))
SEVEN_B = "training/recipes/qwen2.5-coder-7b-qlora.yaml"
# fp32 (the CPU kind forced to one without fast bf16, so no bf16 autocast): one batch of two
# padded packs and two batches of one differ only in the order sums are taken. Seen here: losses
# and gradient norms within 1e-7 (relative); adapter weights within 1e-5, since Adam divides each
# gradient by its own running size and so magnifies rounding where a gradient is near zero.
FP32 = {"TEXT2SQL_CPU_FLAGS": "avx2"}
RELATIVE_TOLERANCE = 1e-4  # losses, gradient norms, token accuracy
WEIGHT_TOLERANCE = 1e-4  # absolute: 1% of one Adam step at the test's learning rate (1e-2)


def launch_two_processes(output_dir: Path, audit_logs: Path, *overrides: str) -> subprocess.CompletedProcess:
    """training.train as two CPU processes under ``accelerate launch``, each noting what it
    writes under ``output_dir`` (tests/write_audit.py) in ``audit_logs``."""
    audit_logs.mkdir()
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        "-m", "tests.write_audit", "training.train", *smoke_argv(output_dir, *overrides), "--use_cpu", "true",
    ]  # fmt: skip
    env = {**os.environ, **FP32, "CUDA_VISIBLE_DEVICES": "", "WRITE_AUDIT_UNDER": str(output_dir),
           "WRITE_AUDIT_LOGS": str(audit_logs)}  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def steps(output_dir: Path) -> list[dict]:
    return [entry for entry in json.loads((output_dir / "loss_curve.json").read_text()) if "loss" in entry]


@pytest.mark.skipif(not (SPIDER / "tables.json").is_file(), reason="Spider not found")
def test_two_processes_train_as_one_process_with_the_same_global_batch(tmp_path, tiny_registry, monkeypatch):
    """Global batch 2 packs: 1 per process x 2 processes against 2 in one process. The same packs
    in each step (the seeded sampler, split between the processes), the same loss normalisation
    (label tokens of the whole global batch), so the same loss curve, gradient norms, token
    counts and adapter, within the tolerances above. The run's files are written once, by process 0."""
    for name, value in FP32.items():
        monkeypatch.setenv(name, value)
    # 4 packs: two steps an epoch, and the third step in the second epoch's new order. (With a
    # number of packs that the global batch doesn't divide, the last step of an epoch differs:
    # accelerate fills the last process's batch with the epoch's first pack, docs/training.md.)
    schedule = ("--max_steps", "3", "--save_steps", "2", "--max_train_examples", "24", "--pack_max_tokens", "1024")
    one = tmp_path / "one-process"
    train(one, *schedule, "--per_device_train_batch_size", "2")
    two = tmp_path / "two-processes"
    launched = launch_two_processes(two, tmp_path / "writes", *schedule, "--per_device_train_batch_size", "1")
    assert launched.returncode == 0, launched.stderr[-4000:]

    log = (two / "train.log").read_text()
    assert "2 processes (MULTI_CPU, gloo)" in log and "lora-cpu: cpu, base weights fp32" in log
    expected, got = steps(one), steps(two)
    assert [(s["step"], s["epoch"]) for s in got] == [(1, 0.5), (2, 1.0), (3, 1.5)]
    for key in ("loss", "grad_norm", "mean_token_accuracy", "learning_rate"):
        assert [s[key] for s in got] == pytest.approx([s[key] for s in expected], rel=RELATIVE_TOLERANCE), key
    assert [s["num_tokens"] for s in got] == [s["num_tokens"] for s in expected]  # both processes' tokens
    assert expected[0]["loss"] != pytest.approx(expected[1]["loss"], rel=1e-3)  # the steps differ: a real curve

    adapter, reference = load_file(two / "adapter_model.safetensors"), load_file(one / "adapter_model.safetensors")
    assert adapter.keys() == reference.keys()
    for name, weight in adapter.items():
        torch.testing.assert_close(weight, reference[name], rtol=0, atol=WEIGHT_TOLERANCE)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())

    writes = {rank: (tmp_path / "writes" / f"rank-{rank}.txt").read_text().splitlines() for rank in (0, 1)}
    written_by_0 = {line.split("\t")[1] for line in writes[0]}
    assert {"adapter_config.json", "train.log", "recipe.yaml", "loss_curve.json"} <= written_by_0
    # Process 1 only makes sure the checkpoint folders exist and saves its own random-number state
    # there (for an exact resume; torch.save writes it from C++, unseen by the audit).
    by_1 = [line.split("\t") for line in writes[1]]
    assert by_1 and all(event == "os.mkdir" and path.startswith("checkpoint-") for event, path in by_1), by_1
    assert sorted(p.name for p in (two / "checkpoint-2").glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]


def launcher_env(config: Path, monkeypatch) -> dict[str, str]:
    """The environment ``accelerate launch --config_file CONFIG`` gives each process, from
    accelerate's own launcher code (its config loader and argument checks; no process started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "training.train", "--config", SEVEN_B])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return prepare_deepspeed_cmd_env(args)[1]
    assert args.multi_gpu or args.use_fsdp, f"{config.name} would not start one process per GPU"
    return prepare_multi_gpu_env(args)


EXPECTED = {  # config: (accelerate's distributed type, weights split between processes)
    "ddp.yaml": ("MULTI_GPU", False),
    "fsdp.yaml": ("FSDP", True),
    "deepspeed-zero3.yaml": ("DEEPSPEED", True),
}


def test_the_accelerate_configs_are_the_three_documented():
    assert sorted(c.name for c in CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_each_accelerate_config_loads_and_gives_the_processes_what_training_expects(config, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file

    from training.backends import quantized_placement, sharded_training

    loaded = load_config_from_file(str(config))
    kind, sharded = EXPECTED[config.name]
    assert loaded.distributed_type.value == kind and loaded.num_machines == 1 and not loaded.use_cpu
    assert loaded.mixed_precision == "bf16"  # what the recipe's CUDA backend trains in

    for name, value in launcher_env(config, monkeypatch).items():
        if name.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert sharded_training() is sharded
    device_map, storage = quantized_placement("cuda")
    if sharded:  # the sharding places the weights; 4-bit values in bf16 words it can split
        assert (device_map, storage) == (None, torch.bfloat16)
    else:  # the whole model on this process's own GPU
        assert (device_map, storage) == ({"": 3}, None)
    if config.name == "fsdp.yaml":
        assert os.environ["FSDP_USE_ORIG_PARAMS"] == "false" and os.environ["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    if config.name == "deepspeed-zero3.yaml":
        assert os.environ["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_docs_launch_each_config_as_its_header_says(config):
    """docs/training.md and the config's own header give the same command line."""
    command = (f"accelerate launch --config_file training/accelerate/{config.name} --num_processes 8 "
               f"-m training.train --config {SEVEN_B}")  # fmt: skip
    header = " ".join(line.lstrip("# ").rstrip("\\ ") for line in config.read_text().splitlines() if line.startswith("#"))
    assert command in " ".join(header.split())
    docs = (ROOT / "docs" / "training.md").read_text()
    assert command in " ".join(docs.replace("\\\n", " ").split())
    assert yaml.safe_load(config.read_text())["num_processes"] == 8
