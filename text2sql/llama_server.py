"""Serve a registry model behind an OpenAI-compatible API on this machine: llama-cpp-python's
server (``llama_cpp.server``) with the GGUF and LoRA adapter the llama.cpp backend would load
(the embedded Q4_K_M Qwen, our adapter converted by ``text2sql.lora_gguf``).

    python -m text2sql.llama_server qwen2.5-coder-0.5b-spider --port 8080
    TEXT2SQL_LLAMACPP_API_KEY=... python -m text2sql.llama_server qwen2.5-coder-0.5b-spider --api-key-env TEXT2SQL_LLAMACPP_API_KEY
    python -m text2sql.llama_server qwen2.5-coder-0.5b-spider --export serving/ollama   # the two GGUFs, for Ollama

then a registry entry with ``backend: openai`` and ``endpoint: {base_url:
http://127.0.0.1:8080/v1, model: qwen2.5-coder-0.5b-spider}`` asks it (``serving/models.yaml``).

What this adds to ``python -m llama_cpp.server``: the CPU backend that fits this CPU is loaded
first (our build keeps one per CPU kind beside the library, ``docs/engine.md``), without
llama.cpp's extra weight buffers on AMX CPUs as in-process; concurrent requests queue instead
of cutting each other's streams short (llama-cpp-python's default ``interrupt_requests``).
``--logprobs`` keeps every position's logits so answers carry per-token log-probabilities
(best-of-k's tie-breaks); llama-cpp-python needs that for them: a vocabulary's worth of floats
for every prompt token (a 670-token prompt: ~130 MB for SmolLM2, ~400 MB for Qwen's 152k
entries), which greedy serving doesn't need, so it is off by default and the registry entry
says ``logprobs: false``. llama-cpp-python's server answers one request at a time.

``running(...)`` starts one in a subprocess on a free loopback port, for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from text2sql.registry import ModelSpec, Registry, default_registry


CONTEXT_TOKENS = 4096
"""The server's context: the prompt budget (3072) and the answer (256), with room for a repair turn."""


def model_files(spec: ModelSpec) -> tuple[Path, Path | None]:
    """The entry's base GGUF and its adapter as a GGUF adapter (converted once, cached), as the
    llama.cpp backend resolves them."""
    from text2sql.backends.llamacpp import adapter_gguf, base_gguf

    base, _ = base_gguf(spec)
    return base, adapter_gguf(spec, base)[0] if spec.adapter else None


EXPORTED = ("model.gguf", "adapter.gguf")
"""The names ``--export`` gives the base GGUF and the GGUF adapter (serving/ollama/Modelfile reads them)."""


def export(spec: ModelSpec, folder: Path) -> list[Path]:
    """Links in ``folder`` to the entry's base GGUF and GGUF adapter (``EXPORTED``), for a
    server that takes files (Ollama)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in zip(EXPORTED, model_files(spec)):
        if target is not None:
            link = folder / name
            link.unlink(missing_ok=True)
            link.symlink_to(target.resolve())
            written.append(link)
    return written


def prepare_llama_cpp() -> None:
    """llama.cpp's CPU backend for this CPU, and models loaded the way the llama.cpp backend
    loads them (no extra buffer types on AMX, where they have crashed)."""
    import llama_cpp.llama_cpp as bindings

    from text2sql import cpu
    from text2sql.backends.llama_runtime import load_library, use_extra_buffers

    load_library()
    default_params = bindings.llama_model_default_params
    if getattr(default_params, "patched_by_text2sql", False):
        return

    def model_params():
        params = default_params()
        params.use_extra_bufts = use_extra_buffers(cpu.cpu_flags())
        return params

    model_params.patched_by_text2sql = True
    bindings.llama_model_default_params = model_params  # llama_cpp.Llama reads its defaults from here


def make_app(spec: ModelSpec, threads: int, logprobs: bool = False, api_key: str | None = None):
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    prepare_llama_cpp()
    base, adapter = model_files(spec)
    model = ModelSettings(
        model=str(base), model_alias=spec.name, lora_path=str(adapter) if adapter else None, n_ctx=CONTEXT_TOKENS,
        n_threads=threads, n_threads_batch=threads, logits_all=logprobs, verbose=False,
    )
    return create_app(server_settings=ServerSettings(api_key=api_key, interrupt_requests=False), model_settings=[model])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(
    model: str, registry: str | os.PathLike | None = None, *, threads: int = 0, api_key_env: str | None = None,
    logprobs: bool = False, start_timeout_s: float = 300.0, log: Path | None = None,
) -> Iterator[str]:
    """A server for registry entry ``model`` in a subprocess on a free loopback port; yields its
    base URL (``http://127.0.0.1:PORT/v1``) once it answers, and stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "text2sql.llama_server", model, "--port", str(port), "--threads", str(threads)]
    command += ["--registry", str(registry)] if registry else []
    command += ["--api-key-env", api_key_env] if api_key_env else []
    command += ["--logprobs"] if logprobs else []
    output = open(log, "ab") if log else subprocess.DEVNULL
    server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=stop_with_parent())
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(server, base_url, start_timeout_s)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log:
            output.close()


def stop_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``Popen``: the child gets SIGTERM when the thread that started it
    ends, even by a signal that skips ``running``'s clean-up (a killed test run), so no server
    is left behind. Linux only (``prctl(PR_SET_PDEATHSIG)``), None elsewhere. libc's ``prctl`` is
    looked up here, before the fork; the child only calls it."""
    if sys.platform != "linux":
        return None
    import ctypes
    import signal

    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()
    PR_SET_PDEATHSIG = 1

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call: no signal will come
            os._exit(1)

    return die_with_parent


def _wait_until_up(server: subprocess.Popen, base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the model server for {base_url} exited with status {server.returncode} before answering")
        try:
            # any answer, even 401 without the key, means it is serving
            httpx.get(f"{base_url}/models", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.25)
    raise RuntimeError(f"the model server at {base_url} did not answer within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="registry model name (its base must be a GGUF: embedded, or a path)")
    parser.add_argument("--registry", default=None, help="registry file (default: $TEXT2SQL_REGISTRY or the packaged one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core this process may use)")
    parser.add_argument("--api-key-env", default=None, help="require the API key held in this environment variable")
    parser.add_argument("--logprobs", action="store_true", help="per-token log-probabilities (keeps every position's logits)")
    parser.add_argument("--export", type=Path, metavar="DIR", help="instead: link the GGUF files into DIR (for Ollama)")
    args = parser.parse_args(argv)
    spec = (Registry.load(args.registry) if args.registry else default_registry()).get(args.model)
    if args.export:
        for link in export(spec, args.export):
            print(f"{link} -> {link.resolve()}")
        return
    import uvicorn

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env) or parser.error(f"the environment variable {args.api_key_env} is not set")
    threads = args.threads or len(os.sched_getaffinity(0))
    app = make_app(spec, threads, logprobs=args.logprobs, api_key=api_key)
    print(f"serving {spec.name} at http://{args.host}:{args.port}/v1 ({threads} threads)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
