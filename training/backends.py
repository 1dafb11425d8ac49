"""Which way to train on this machine, and loading the model for it.

``choose_backend`` picks, and ``train.py`` prints, one of:

* ``unsloth``: unsloth's ``FastLanguageModel`` (4-bit unless ``quantize=none``), when unsloth
  is installed (``training/requirements-unsloth.txt``, its own environment: it pins older
  transformers/trl/datasets) and CUDA is present;
* ``qlora-cuda``: transformers + bitsandbytes 4-bit NF4, double quantization, bf16 compute;
* ``lora-cuda``: bf16 weights, LoRA (``quantize=none`` on CUDA);
* ``lora-cpu``: fp32 weights and LoRA; bf16 only where the CPU has AVX512-BF16/AMX (elsewhere
  PyTorch emulates bf16, ~6x slower than fp32);
* ``qlora-cpu``: ``quantize=4bit`` forces the bitsandbytes path on CPU. It works, slowly;
  the tests use it to cover the QLoRA code. On CPUs with AVX512-BF16, bitsandbytes repacks a
  4-bit layer for an inference kernel the first time it runs without gradients (generate, an
  evaluation pass) and never packs it back: ``keep_4bit_training_layout`` stops that here.

Model names resolve through the app's registry, so ``Qwen/Qwen2.5-Coder-0.5B-Instruct`` (or
``qwen2.5-coder-0.5b``) loads from the HF cache at the pinned revision, else the Hub, else
the copy embedded in PyPI packages, and the adapter still names the real Hub id as its base.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import importlib.util
import os
from pathlib import Path

from text2sql import cpu
from text2sql.registry import Registry, resolve_weights


UNSLOTH_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TINY_RANDOM = "tiny-random-llama"


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    device: str
    quantize_4bit: bool
    bf16: bool

    def describe(self) -> str:
        weights = "4-bit NF4 (double quant), bf16 compute" if self.quantize_4bit else ("bf16" if self.bf16 else "fp32")
        return f"{self.name}: {self.device}, base weights {weights}, LoRA adapters trained"


def choose_backend(quantize: str = "auto", use_unsloth: bool = True) -> Backend:
    """``quantize``: "auto" (4-bit on CUDA only), "4bit" (always) or "none"."""
    import torch

    if quantize not in ("auto", "4bit", "none"):
        raise ValueError(f"quantize must be auto, 4bit or none, not {quantize!r}")
    cuda = torch.cuda.is_available()
    four_bit = quantize == "4bit" or (quantize == "auto" and cuda)
    if cuda:
        if use_unsloth and importlib.util.find_spec("unsloth") is not None:
            return Backend("unsloth", "cuda", four_bit, bf16=True)
        return Backend("qlora-cuda" if four_bit else "lora-cuda", "cuda", four_bit, bf16=True)
    return Backend("qlora-cpu" if four_bit else "lora-cpu", "cpu", four_bit, bf16=cpu.has_fast_bf16())


def release_freed_memory() -> bool:
    """Give the pages of freed heap blocks back to the kernel (glibc's ``malloc_trim``); False
    where the C library has none (not glibc).

    glibc maps a large block on its own at first, but raises that threshold to the size of each
    mapped block freed, up to 32 MiB; after that a CPU step's activations (tensors of a few MB
    whose sizes change with each pack's length) are carved from the heap, and freed blocks
    between live ones stay resident. The one-epoch CPU run grew ~120 MB a step that way until
    the kernel killed it at 24 GB. Trimming after each step costs little; mapping every block of
    1 MiB or more instead (``mallopt``) held the memory too but made steps 1.3x slower."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None; looked up once (``find_library`` runs ``ldconfig``)."""
    return getattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim", None)


def resolve_model(name_or_path: str, revision: str | None = None) -> tuple[str, str | None]:
    """(what to load from, the real Hub id or None). Registry names and the Hub ids of
    registry bases resolve offline through the registry; anything else passes through."""
    if name_or_path == TINY_RANDOM:
        return str(tiny_random_model_dir()), None
    registry = Registry.load()
    for name in registry.names():
        base = registry.get(name).base
        # ModelConfig's default revision "main" means "no particular one": use the pinned one.
        if name_or_path in (name, base.repo_id) and revision in (None, "main", base.revision):
            return str(resolve_weights(base, registry.get(name).registry_dir).path), base.repo_id
    if Path(name_or_path).is_dir():
        return name_or_path, None
    return name_or_path, name_or_path


def tiny_random_model_dir() -> Path:
    """``tiny-random-llama``: a 2-layer Llama with random weights and SmolLM2's real tokenizer
    (from its embedded GGUF), for the smoke recipe. Built once into the cache."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    from text2sql.embedded import SMOLLM2_135M, part_paths
    from text2sql.settings import get_settings

    folder = get_settings().cache_path / TINY_RANDOM
    if (folder / "config.json").is_file():
        return folder
    gguf = part_paths(SMOLLM2_135M)[0]
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{TINY_RANDOM}-"))
    save_tiny_llama(tokenizer, building, hidden_size=64)
    try:
        building.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(building)
    return folder


def save_tiny_llama(tokenizer, folder: Path, hidden_size: int) -> None:
    """A 2-layer Llama with random weights (seed 0) for ``tokenizer``, saved with it in ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_model_and_tokenizer(model_args, backend: Backend, max_length: int, seed: int):
    """(model, tokenizer, peft_config): peft_config is None when the model already carries
    its LoRA adapters (unsloth)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, hub_id = resolve_model(model_args.model_name_or_path, model_args.model_revision)
    if backend.name == "unsloth":
        return _load_unsloth(path, hub_id, model_args, backend, max_length, seed)
    import torch
    from peft import prepare_model_for_kbit_training
    from trl import get_peft_config, get_quantization_config

    model_args.dtype = "bfloat16" if backend.bf16 else "float32"
    model_args.load_in_4bit = backend.quantize_4bit
    model_args.bnb_4bit_quant_type = "nf4"
    model_args.use_bnb_nested_quant = True
    quantization = get_quantization_config(model_args)
    device_map, dtype = None, getattr(torch, model_args.dtype)
    if quantization is not None:
        quantization.bnb_4bit_compute_dtype = torch.bfloat16
        device_map, storage = quantized_placement(backend.device)
        if storage is not None:
            quantization.bnb_4bit_quant_storage = dtype = storage
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=None if hub_id is None or path != hub_id else model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation or "sdpa",
        quantization_config=quantization,
        device_map=device_map,
    )
    if quantization is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if backend.device == "cpu":
            keep_4bit_training_layout(model)
    if hub_id:
        model.name_or_path = hub_id  # peft writes this into adapter_config.json as the base
    tokenizer = AutoTokenizer.from_pretrained(path)
    model_args.use_peft = True
    peft_config = get_peft_config(model_args)
    if peft_config.target_modules in (None, {"all-linear"}):
        peft_config.target_modules = "all-linear"  # peft's keyword is a string, never in a list
    return model, tokenizer, peft_config


def sharded_training() -> bool:
    """True under ``accelerate launch`` with FSDP or DeepSpeed ZeRO-3 (training/accelerate/):
    the model's weights are split between processes."""
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    zero3 = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    return fsdp or zero3


def quantized_placement(device: str):
    """(device_map, bnb_4bit_quant_storage or None) for a 4-bit model in this process. Sharded
    (FSDP, ZeRO-3): no device map, the sharding places the weights, and the 4-bit values are
    stored as bf16 words, which it can split (it shards only float tensors; PEFT's FSDP/ZeRO-3
    QLoRA recipe). Otherwise the whole model on this process's device: under DDP each process
    has its own GPU, its local rank (``cuda`` alone would put every copy on GPU 0)."""
    import torch

    if sharded_training():
        return None, torch.bfloat16
    if device == "cuda":
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}, None
    return device, None


def keep_4bit_training_layout(model) -> int:
    """Keep every 4-bit layer in the layout training computes with; the number of layers.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a ``Linear4bit``'s weights for its
    bf16 inference kernel the first time the layer runs in eval mode without gradients, and
    nothing packs them back when training resumes. After the Trainer's first evaluation,
    training would then run through that kernel, which has no backward: gradients to the
    earlier layers' adapters go silently wrong (or raise). And a layer whose shape doesn't
    fit the packing (fewer than 64 inputs, the quantisation block; outputs not a multiple
    of 32) fails to repack with a reshape error. With repacking off, evaluation dequantizes
    exactly as training does, on every kind of CPU.
    """
    from bitsandbytes.nn import Linear4bit

    layers = [module for module in model.modules() if isinstance(module, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def _load_unsloth(path, hub_id, model_args, backend: Backend, max_length: int, seed: int):
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path, max_seq_length=max_length, dtype=None, load_in_4bit=backend.quantize_4bit
    )
    targets = model_args.lora_target_modules
    model = FastLanguageModel.get_peft_model(
        model,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=UNSLOTH_TARGETS if targets in (None, ["all-linear"]) else targets,
        use_gradient_checkpointing="unsloth",
        random_state=seed,
    )
    if hub_id:
        model.peft_config["default"].base_model_name_or_path = hub_id
    return model, tokenizer, None
