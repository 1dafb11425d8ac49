"""llama.cpp through llama-cpp-python's low-level API: the library with the CPU backend that
fits this CPU, a loaded GGUF model (tokenizer, chat template, LoRA adapters) and a context
(a KV cache of many sequences, batches, next-token logits, saved sequence states).

One install serves every x86 CPU kind: ``scripts/install.sh`` builds llama.cpp with
``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS`` (one CPU backend per instruction-set level,
x64 ... haswell (AVX2) ... icelake/zen4 (AVX-512 VNNI/BF16) ... sapphirerapids (AMX)), and
``load_library`` loads the best one this CPU can run. On CPUs with AMX the model is loaded
without llama.cpp's extra weight buffers (``use_extra_bufts=False``): its AMX buffer type has
crashed llama.cpp on prompts longer than one token (docs/engine.md).

    from text2sql.backends.llama_runtime import LlamaModel, LlamaContext, load_library
    model = LlamaModel(Path("model.gguf"))
    context = LlamaContext(model, adapter=None, n_ctx=4096, n_seq=8, threads=2)
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

from text2sql import cpu
from text2sql.errors import ModelUnavailableError


_library = None
UBATCH_TOKENS = 256
"""Tokens computed at once within a batch: half llama.cpp's default of 512 halves the compute
buffer (34 MB less RSS for the 1.5B) and prefills as fast (``benchmarks.ubatch``: 660 tokens,
0.995x the time at 512)."""
GGML_LOG_LEVEL_ERROR = 4  # ggml.h's enum in 0.3.36 (llama_cpp._logger still maps an older one)


def load_library():
    """The ``llama_cpp`` module with its CPU backend loaded (the best variant for this CPU)."""
    global _library
    if _library is None:
        try:
            import llama_cpp
        except ImportError:
            raise ModelUnavailableError(
                "This model runs on llama.cpp, and llama-cpp-python is not installed: ./scripts/install.sh "
                "builds it. Or start on a model that also runs on transformers: "
                "TEXT2SQL_DEFAULT_MODEL=qwen2.5-coder-0.5b-spider."
            ) from None

        _quiet(llama_cpp)
        ggml = _ggml_of_libllama(Path(llama_cpp.__file__).parent / "lib")
        ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
        if ggml.ggml_backend_reg_count() == 0:  # a GGML_BACKEND_DL build: nothing linked in
            # llama.cpp itself looks beside the executable (python) and in the working
            # directory; the variants are installed in the package's lib/ folder.
            ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
            ggml.ggml_backend_load_all_from_path(str(Path(llama_cpp.__file__).parent / "lib").encode())
        if ggml.ggml_backend_reg_count() == 0:
            raise RuntimeError("llama.cpp found no CPU backend for this CPU in its lib/ folder; reinstall it (scripts/install.sh).")
        llama_cpp.llama_backend_init()
        _library = llama_cpp
    return _library


def _ggml_of_libllama(folder: Path) -> ctypes.CDLL:
    """The libggml instance libllama uses. A wheel holds no symlinks, so libggml.so,
    libggml.so.0 and libggml.so.0.x.y are three copies: each loaded would keep a registry of
    its own. Opened by its soname (the shortest versioned name), dlopen returns the one
    libllama already loaded."""
    sonames = sorted((p.name for p in folder.glob("libggml.so.*")), key=len)
    return ctypes.CDLL(sonames[0] if sonames else str(folder / "libggml.so"))


def _quiet(llama_cpp) -> None:
    """Only llama.cpp's errors reach stderr (not its load-time chatter)."""

    @llama_cpp.llama_log_callback
    def log(level, text, user_data):
        if level == GGML_LOG_LEVEL_ERROR:
            sys.stderr.write(text.decode(errors="replace"))

    _quiet.callback = log  # ctypes callbacks must outlive the call
    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))


def backend_features() -> list[str]:
    """The instruction sets the loaded CPU backend was built for (e.g. ["AVX2", "AVX512", ...])."""
    info = load_library().llama_print_system_info().decode()
    return [item.split("=")[0].strip() for item in info.replace("CPU :", "|").split("|") if item.strip().endswith("= 1")]


def use_extra_buffers(flags: set[str]) -> bool:
    """llama.cpp's extra weight buffers (repacked layouts for faster matmuls) everywhere but on
    AMX CPUs, where its AMX buffer type has crashed on prompts longer than one token."""
    return not flags & {"amx_tile", "amx_int8", "amx_bf16"}


def _check(result: int, what: str) -> None:
    if result != 0:
        raise RuntimeError(f"llama.cpp failed to {what} (code {result}).")


class LlamaModel:
    """One GGUF model in memory, shared by every context that uses it."""

    def __init__(self, path: Path, flags: set[str] | None = None, vocab_only: bool = False):
        """``vocab_only``: the tokenizer and metadata without the weights (counting tokens)."""
        lib = load_library()
        params = lib.llama_model_default_params()
        params.use_extra_bufts = use_extra_buffers(cpu.cpu_flags() if flags is None else flags)
        # Read, not memory-mapped: the repacked layouts are copies, and a mapped file stays
        # resident beside them (the 1.5B's server held ~600 MB more).
        params.load_mode = lib.LLAMA_LOAD_MODE_NONE
        params.vocab_only = vocab_only
        self.lib, self.path = lib, path
        self.pointer = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self.pointer:
            raise RuntimeError(f"llama.cpp could not load the model {path}.")
        self.vocab = lib.llama_model_get_vocab(self.pointer)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lib.llama_model_n_ctx_train(self.pointer)
        self.adapters: dict[Path, object] = {}
        self._pieces: dict[int, bytes] = {}

    def __del__(self):
        if getattr(self, "pointer", None) and self.lib.llama_model_free:  # None at interpreter exit
            self.lib.llama_model_free(self.pointer)
            self.pointer = None

    def describe(self) -> str:
        """e.g. "qwen2 1B Q4_K - Medium"."""
        buffer = ctypes.create_string_buffer(256)
        self.lib.llama_model_desc(self.pointer, buffer, len(buffer))
        return buffer.value.decode()

    def metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(1 << 16)
        length = self.lib.llama_model_meta_val_str(self.pointer, key.encode(), buffer, len(buffer))
        return buffer.value.decode() if length >= 0 else None

    def adapter(self, path: Path):
        """The LoRA adapter GGUF at ``path``, loaded once onto this model."""
        if path not in self.adapters:
            pointer = self.lib.llama_adapter_lora_init(self.pointer, str(path).encode())
            if not pointer:
                raise RuntimeError(f"llama.cpp could not load the LoRA adapter {path} onto {self.path.name}.")
            self.adapters[path] = pointer  # freed with the model
        return self.adapters[path]

    def chat_template(self) -> str:
        template = self.lib.llama_model_chat_template(self.pointer, None)
        if not template:
            raise RuntimeError(f"{self.path.name} has no chat template.")
        return template.decode()

    def token_text(self, token: int) -> str:
        return self.lib.llama_vocab_get_text(self.vocab, token).decode()

    def special_tokens(self) -> dict[str, str]:
        """bos_token / eos_token as chat templates name them."""
        tokens = {"bos_token": self.lib.llama_vocab_bos(self.vocab), "eos_token": self.lib.llama_vocab_eos(self.vocab)}
        return {name: self.token_text(token) if token >= 0 else "" for name, token in tokens.items()}

    def tokenize(self, text: str) -> list[int]:
        """``text`` as token ids, special tokens written in it parsed, no BOS added (the chat
        template writes its own)."""
        data = text.encode()
        size = len(data) + 8
        while True:
            buffer = (self.lib.llama_token * size)()
            count = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, size, False, True)
            if count >= 0:
                return list(buffer[:count])
            size = -count

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens: none, as ``skip_special_tokens``)."""
        if token not in self._pieces:
            buffer = ctypes.create_string_buffer(256)
            length = self.lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
            self._pieces[token] = buffer.raw[: max(length, 0)]
        return self._pieces[token]

    def is_end(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))


class LlamaContext:
    """A KV cache of up to ``n_seq`` sequences over one model (+ adapter), fed in batches.

    The cache is unified (``kv_unified``): every sequence may use any of its ``n_ctx`` cells,
    and a sequence copied with ``copy_seq`` shares its cells until it writes new ones, so
    candidates that share a prompt share its keys and values.
    """

    def __init__(self, model: LlamaModel, adapter, n_ctx: int, n_seq: int, threads: int, n_batch: int = 2048):
        lib = model.lib
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, UBATCH_TOKENS
        params.n_seq_max = n_seq
        params.n_outputs_max = n_seq  # logits are wanted for one token per sequence at most
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True
        params.no_perf = True
        self.lib, self.model, self.n_batch = lib, model, n_batch
        self.pointer = lib.llama_init_from_model(model.pointer, params)
        if not self.pointer:
            raise RuntimeError("llama.cpp could not create a context (out of memory?).")
        if adapter is not None:
            _check(lib.llama_set_adapters_lora(self.pointer, (lib.llama_adapter_lora_p_ctypes * 1)(adapter), 1,
                                               (ctypes.c_float * 1)(1.0)), "apply the LoRA adapter")
        self.n_ctx = lib.llama_n_ctx(self.pointer)
        self.memory = lib.llama_get_memory(self.pointer)
        self.batch = lib.llama_batch_init(n_batch, 0, 1)

    def __del__(self):
        if getattr(self, "pointer", None) and self.lib.llama_free:  # None at interpreter exit
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.pointer)
            self.pointer = None

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.memory, True)

    def copy_seq(self, source: int, target: int) -> None:
        self.lib.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def remove_seq(self, seq: int, start: int = -1) -> None:
        """Forget ``seq``'s positions from ``start`` on (-1: all of them)."""
        self.lib.llama_memory_seq_rm(self.memory, seq, start, -1)

    def state(self, seq: int):
        """A copy of ``seq``'s keys and values (restored with ``set_state``)."""
        size = self.lib.llama_state_seq_get_size(self.pointer, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = self.lib.llama_state_seq_get_data(self.pointer, buffer, size, seq)
        if written != size:
            raise RuntimeError(f"llama.cpp saved {written} of {size} bytes of a sequence's state.")
        return buffer

    def set_state(self, seq: int, state) -> None:
        if self.lib.llama_state_seq_set_data(self.pointer, state, len(state), seq) == 0:
            raise RuntimeError("llama.cpp could not restore a saved prefix (its KV cache is full).")

    def feed(self, items: list[tuple[int, list[int], int]], logits: bool = True,
             every_token: bool = False) -> np.ndarray | None:
        """Run each ``(seq, tokens, first position)`` through the model, in batches of at most
        ``n_batch`` tokens; with ``logits``, the next-token logits after each item's last token
        (one row per item, float32), or with ``every_token`` after each of its tokens (one row
        per token, as a step verifying drafted tokens needs; at most ``n_seq`` rows a batch)."""
        flat = [(seq, token, start + i, logits and (every_token or i == len(tokens) - 1))
                for seq, tokens, start in items for i, token in enumerate(tokens)]
        rows = []
        for begin in range(0, len(flat), self.n_batch):
            chunk = flat[begin : begin + self.n_batch]
            self._decode(chunk)
            wanted = sum(out for *_, out in chunk)
            if wanted:
                rows.append(self._logits(wanted))
        return np.concatenate(rows) if logits else None

    def _decode(self, chunk: list[tuple[int, int, int, bool]]) -> None:
        batch = self.batch
        for i, (seq, token, position, out) in enumerate(chunk):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = seq, out
        batch.n_tokens = len(chunk)
        result = self.lib.llama_decode(self.pointer, batch)
        if result == 1:
            raise RuntimeError("llama.cpp's KV cache is full: fewer or shorter prompts per batch would fit.")
        _check(result, "run the model")

    def _logits(self, rows: int) -> np.ndarray:
        pointer = self.lib.llama_get_logits(self.pointer)
        return np.ctypeslib.as_array(pointer, shape=(rows, self.model.n_vocab)).copy()
