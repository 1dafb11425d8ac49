"""Models that turn chat messages into SQL text: the generator protocol and the backend registry.

A backend is a factory ``ModelSpec -> SQLGenerator``; each lives in a module of its own under
``text2sql/backends/`` and is imported only when a registry entry uses it:

- ``llama.cpp`` (``text2sql.backends.llamacpp``): GGUF weights as they are (the embedded
  Q4_K_M file), LoRA adapters as GGUF adapters, the schema prefix's KV state kept per
  database, best-of-k as one multi-sequence batch. The CPU engine.
- ``transformers`` (``text2sql.backends.transformers``): safetensors (or the embedded GGUF
  dequantised), peft adapters; training-time checks and CUDA.
- ``openai`` (``text2sql.backends.openai``): a model behind an OpenAI-compatible HTTP server
  (vLLM, TGI, llama.cpp's server, Ollama); the entry's ``endpoint`` says where.
- ``auto``: llama.cpp when ``llama-cpp-python`` is installed and no NVIDIA GPU is present,
  else transformers (``TEXT2SQL_ENGINE`` forces one). The packaged registry's default
  entries use it.

Tests and UI work register a fake backend (``register_backend``).

Decoding is greedy unless the registry entry says otherwise, and stops at the end of the
first SQL statement (``text2sql.sqlout.sql_is_complete``) or the end-of-turn token.
``sample`` gives k candidates per prompt (the greedy one, then k - 1 drawn at a temperature)
with each one's log-likelihood, all decoded together after one pass over the shared prompt
(``text2sql.selection`` picks among them).

    from text2sql.engine import load_generator
    gen = load_generator("qwen2.5-coder-0.5b")
    print(gen.engine)                                   # which backend, how it runs
    print(gen.generate([messages])[0])
    print(gen.sample([messages], k=4, temperature=0.8, seed=0)[0])   # [Sample(text, logprob, tokens), ...]
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from text2sql import cpu
from text2sql.prompt import Messages
from text2sql.registry import ModelSpec, Registry, default_registry
from text2sql.settings import get_settings


@dataclasses.dataclass(frozen=True)
class Sample:
    """One candidate completion."""

    text: str
    logprob: float
    """Sum of the model's log-probabilities of the completion's tokens (at temperature 1,
    whatever temperature drew them): the sequence log-likelihood."""
    token_ids: tuple[int, ...]

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


class SQLGenerator(Protocol):
    spec: ModelSpec
    origin: str
    """Where the weights came from, in words."""
    engine: str
    """Which backend runs the model and how, in words (recorded with evaluation results)."""
    max_prompt_tokens: int

    def count_tokens(self, messages: Messages) -> int: ...

    def prefill(self, messages: Messages) -> None:
        """Compute and keep the prompt's prefix, so later prompts that start the same way are faster."""

    def generate(self, prompts: list[Messages], **overrides) -> list[str]: ...

    def sample(self, prompts: list[Messages], k: int, temperature: float, seed: int) -> list[list[Sample]]: ...


BACKENDS: dict[str, Callable[[ModelSpec], SQLGenerator]] = {}
_UNLOADERS: list[Callable[[], None]] = []


def register_backend(name: str, factory: Callable[[ModelSpec], SQLGenerator], unload: Callable[[], None] | None = None) -> None:
    """``factory`` builds the generators of registry entries whose backend is ``name``;
    ``unload`` (optional) frees what the backend shares between them (``unload_all``)."""
    BACKENDS[name] = factory
    if unload:
        _UNLOADERS.append(unload)


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver with a device, seen without importing torch (the llama.cpp path never needs it)."""
    return Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*"))


def backend_for(spec: ModelSpec) -> str:
    """The backend that runs ``spec``: its own, or for ``auto`` the ``engine`` setting, whose
    default prefers llama.cpp on CPU-only machines that have it installed."""
    if spec.backend != "auto":
        return spec.backend
    choice = get_settings().engine
    if choice != "auto":
        return choice
    return "llama.cpp" if llama_cpp_installed() and not nvidia_gpu_present() else "transformers"


_loaded: dict[str, SQLGenerator] = {}
_loading_lock = threading.Lock()


def load_generator(name: str | None = None, registry: Registry | None = None) -> SQLGenerator:
    """The generator for registry model ``name`` (default model if None), loaded once per process."""
    spec = (registry or default_registry()).get(name)
    with _loading_lock:
        if spec.name not in _loaded:
            backend = backend_for(spec)
            if backend not in BACKENDS:
                raise ValueError(f"Model {spec.name!r} uses unknown backend {backend!r}; known: {sorted(BACKENDS)}")
            _loaded[spec.name] = BACKENDS[backend](spec)
        return _loaded[spec.name]


def unload_all() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _loading_lock:
        _loaded.clear()
        for unload in _UNLOADERS:
            unload()


# ---------------------------------------------------------------------------
# CPU facts the transformers backend uses


def inference_dtype():
    import torch

    choice = get_settings().dtype
    if choice != "auto":
        return getattr(torch, choice)
    if torch.cuda.is_available() or cpu.has_fast_bf16():
        return torch.bfloat16
    return torch.float32


# ---------------------------------------------------------------------------
# The built-in backends, imported on first use


def _transformers(spec: ModelSpec) -> SQLGenerator:
    from text2sql.backends.transformers import TransformersGenerator

    return TransformersGenerator(spec)


def _unload_transformers() -> None:
    import sys

    if "text2sql.backends.transformers" in sys.modules:
        sys.modules["text2sql.backends.transformers"]._LoadedBase.cache.clear()


def _llama_cpp(spec: ModelSpec) -> SQLGenerator:
    from text2sql.backends.llamacpp import LlamaCppGenerator

    return LlamaCppGenerator(spec)


def _unload_llama_cpp() -> None:
    import sys

    if "text2sql.backends.llamacpp" in sys.modules:
        sys.modules["text2sql.backends.llamacpp"].unload()


def _openai(spec: ModelSpec) -> SQLGenerator:
    from text2sql.backends.openai import OpenAIGenerator

    return OpenAIGenerator(spec)


register_backend("transformers", _transformers, _unload_transformers)
register_backend("llama.cpp", _llama_cpp, _unload_llama_cpp)
register_backend("openai", _openai)
