"""The openai backend: a model behind an OpenAI-compatible HTTP server (vLLM, Text Generation
Inference / Inference Endpoints, llama.cpp's server, llama-cpp-python's server, Ollama), asked
with our prompt as chat messages. Nothing is loaded here: the server holds the weights, batches
the requests and keeps its own prefix cache.

A registry entry (``serving/models.yaml`` has one per kind of server):

    qwen2.5-coder-0.5b-spider-vllm:
      backend: openai
      base: {repo_id: Qwen/Qwen2.5-Coder-0.5B-Instruct, revision: ea3f...}   # what the server serves
      adapter: {repo_id: text2sql-project/qwen2.5-coder-0.5b-spider, path: ...}
      endpoint:
        base_url: http://127.0.0.1:8000/v1
        model: qwen2.5-coder-0.5b-spider      # the server's name for it (vLLM: the LoRA module's)
        api_key_env: TEXT2SQL_VLLM_API_KEY    # the NAME of the variable holding the key, never the key
      generation: {max_new_tokens: 256}

``base`` and ``adapter`` are not loaded: they say what the server serves, and
``tests/test_serving.py`` checks the serving files against them. The other ``endpoint`` keys
are the fields of ``Endpoint`` below (timeouts, retries, concurrency, ``n``, sampling fields).

- **Prompt**: ``build_messages`` as chat messages; the server renders them with its chat
  template. ``tests/test_openai_backend.py`` checks llama-cpp-python's server renders them as
  the llama.cpp backend does (the same prompt tokens, the same greedy answer).
- **Decoding**: greedy is temperature 0. Answers stream in, and a stream is closed as soon as
  its text holds a whole first SQL statement (``text2sql.sqlout.sql_is_complete``, the
  in-process stop rule), which stops the server's work on it; ``max_tokens`` is the entry's
  ``max_new_tokens``.
- **Best of k**: the greedy answer plus k - 1 draws at the temperature: one request with
  ``n = k - 1`` where the server draws several choices per request (``n: true``: vLLM), else
  k - 1 concurrent requests seeded ``seed + 1`` ... (and the same for any choices a server
  left out). Each candidate's log-likelihood is the sum of the per-token log-probabilities the
  server returns; one that returns none gives every candidate 0.0, so ties go to the greedy one.
- **Tokens**: ``count_tokens`` (what ``fit_schema`` trims a long schema by) counts with the
  served model's own tokenizer and chat template where this machine has them: the base's GGUF
  (embedded, or a ``path``) read by llama.cpp, vocabulary only; else its tokenizer files (a
  local folder, or the Hub repo at the pinned revision) read by transformers. Both give the
  server's own count (tested against llama-cpp-python's ``usage.prompt_tokens``). With neither,
  it estimates from UTF-8 bytes (``bytes_per_token``), at or above the true count for Qwen's and
  SmolLM2's tokenizers on Spider's prompts: long schemas are then trimmed earlier than
  in-process, and ``engine`` says so.
- **Failures**: every request has a deadline; 429, 5xx, refused connections, timeouts and
  streams cut short are retried with exponential backoff (``Retry-After`` honoured, capped);
  then ``ModelUnavailableError`` names the endpoint. Other refusals (401, 404, 400) are not
  retried. Nothing waits forever.

    from text2sql.engine import load_generator
    gen = load_generator("qwen2.5-coder-0.5b-spider-vllm", Registry.load("serving/models.yaml"))
    gen.generate([messages]); gen.sample([messages], k=8, temperature=0.8, seed=0)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx

from text2sql.engine import Sample
from text2sql.errors import ModelUnavailableError
from text2sql.prompt import Messages
from text2sql.registry import ModelSpec
from text2sql.settings import get_settings
from text2sql.sqlout import sql_is_complete


PER_MESSAGE_TOKENS = 8
"""For the estimate: tokens a chat template adds around one message, at most (ChatML: 5), and
for the reply's header."""
TOKENIZER_FILES = ["tokenizer*", "vocab.json", "merges.txt", "special_tokens_map.json", "*.jinja", "*.model", "*.tiktoken"]
MAX_RETRY_AFTER_S = 30.0
"""A server's Retry-After is honoured up to this long."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the server (a registry entry's ``endpoint``)."""

    base_url: str
    """The API's root, ending in /v1 on every server here (e.g. http://127.0.0.1:8000/v1)."""
    model: str
    """The model's name on the server (vLLM: the LoRA module's name, or the served base name)."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (a Space secret); None: no key."""
    timeout_s: float = 60.0
    """One attempt of one request, from sending it to the end of its answer."""
    connect_timeout_s: float = 5.0
    retries: int = 3
    """Attempts after the first, on 429, 5xx, connection failures, timeouts and cut streams."""
    backoff_s: float = 1.0
    """Wait before the first retry; doubled for each later one."""
    concurrency: int = 16
    """Requests this process has in flight to the server at most."""
    n: bool = False
    """The server draws several choices per request (OpenAI's ``n``: vLLM does, llama.cpp's servers don't)."""
    logprobs: bool = True
    """Ask for per-token log-probabilities when drawing best-of-k candidates."""
    bytes_per_token: float = 2.0
    """For the token estimate when no tokenizer is at hand: UTF-8 bytes per token, low enough to
    overestimate (Spider's prompts: 2.2 or more for SmolLM2's tokenizer, 2.5 for Qwen's)."""
    extra_body: dict = dataclasses.field(default_factory=dict)
    """Fields added to every request: what a server needs to draw from the plain softmax at
    the temperature, as in-process (llama.cpp's servers: top_k 0, top_p 1, min_p 0)."""

    @classmethod
    def of(cls, spec: ModelSpec) -> Endpoint:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(spec.endpoint) - known)
        if unknown:
            raise ModelUnavailableError(f"{spec.name}: unknown endpoint keys {unknown}; known: {', '.join(sorted(known))}.")
        missing = [key for key in ("base_url", "model") if not spec.endpoint.get(key)]
        if missing:
            raise ModelUnavailableError(f"{spec.name}: backend openai needs endpoint {' and '.join(missing)}.")
        url = urlparse(spec.endpoint["base_url"])
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ModelUnavailableError(f"{spec.name}: endpoint base_url must be an http(s) URL, not {spec.endpoint['base_url']!r}.")
        return cls(**spec.endpoint)

    @property
    def where(self) -> str:
        return f"{self.base_url} (model {self.model})"


@dataclasses.dataclass(frozen=True)
class ServedSample(Sample):
    """A candidate written by a server, which sends token texts, not ids: ``token_ids`` is
    empty and the count is kept instead."""

    token_count: int = 0

    @property
    def tokens(self) -> int:
        return self.token_count


@dataclasses.dataclass
class Choice:
    """One choice of a streamed chat completion, as its chunks arrive."""

    text: str = ""
    logprob: float = 0.0
    tokens: int = 0
    done: bool = False
    """It finished, or its text holds a whole first SQL statement (what follows is ignored)."""

    def add(self, part: dict) -> None:
        """Take one chunk's part for this choice (``choices[i]`` of a ``chat.completion.chunk``)."""
        if self.done:
            return
        content = (part.get("delta") or {}).get("content") or ""
        token_logprobs = (part.get("logprobs") or {}).get("content") or []
        self.logprob += sum(entry["logprob"] for entry in token_logprobs)
        self.tokens += len(token_logprobs) or (1 if content else 0)
        self.text += content
        self.done = bool(part.get("finish_reason")) or sql_is_complete(self.text)


def read_stream(lines, wanted: int, deadline: float) -> dict[int, Choice]:
    """The choices of a server-sent-event stream of chat completion chunks, read until the
    server ends it or the ``wanted`` choices are all done."""
    choices: dict[int, Choice] = {}
    for line in lines:
        if time.monotonic() > deadline:
            raise RetryableError("no whole answer before the deadline")
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("error"):
            raise RetryableError(f"the server reported an error mid-answer: {str(chunk['error'])[:300]}")
        for part in chunk.get("choices") or []:
            choices.setdefault(part.get("index", 0), Choice()).add(part)
        if len(choices) >= wanted and all(choice.done for choice in choices.values()):
            break  # closing the stream tells the server to stop
    return choices


class RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIGenerator:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.endpoint = Endpoint.of(spec)
        unsupported = set(spec.generation) - {"max_new_tokens", "do_sample"} or spec.generation.get("do_sample")
        if unsupported:
            raise ValueError(f"{spec.name}: the openai backend decodes greedily (best-of-k: sample); "
                             f"unsupported generation settings {spec.generation}.")
        settings = get_settings()
        self.max_new_tokens = int(spec.generation.get("max_new_tokens", settings.max_new_tokens))
        self.max_prompt_tokens = settings.max_prompt_tokens
        self.headers = {"Authorization": f"Bearer {self._api_key()}"} if self.endpoint.api_key_env else {}
        self.url = self.endpoint.base_url.rstrip("/") + "/chat/completions"
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.endpoint.timeout_s, connect=self.endpoint.connect_timeout_s),
            limits=httpx.Limits(max_connections=self.endpoint.concurrency),
        )
        self.slots = threading.BoundedSemaphore(self.endpoint.concurrency)
        self.counter: Callable[[Messages], int] | None = None
        self.counter_lock = threading.Lock()
        served = spec.base.describe() + (f" + adapter {spec.adapter.describe()}" if spec.adapter else "")
        self.origin = f"OpenAI-compatible server {self.endpoint.where}, serving {served}"

    @property
    def engine(self) -> str:
        estimated = "; prompt tokens estimated" if self.counter == self._estimate else ""
        return f"openai (OpenAI-compatible server {self.endpoint.where}; httpx {httpx.__version__}{estimated})"

    def _api_key(self) -> str:
        name = self.endpoint.api_key_env
        key = os.environ.get(name, "")
        if not key:
            raise ModelUnavailableError(
                f"{self.spec.name}: the API key of {self.endpoint.base_url} is read from the environment variable "
                f"{name}, which is not set (on a Hugging Face Space: add a secret named {name})."
            )
        return key

    def count_tokens(self, messages: Messages) -> int:
        """The prompt's tokens as the server counts them (an estimate at or above that when
        no tokenizer is at hand: see the module docstring)."""
        with self.counter_lock:
            if self.counter is None:
                self.counter = exact_counter(self.spec) or self._estimate
        return self.counter(messages)

    def _estimate(self, messages: Messages) -> int:
        text_bytes = sum(len(m["content"].encode()) for m in messages)
        return math.ceil(text_bytes / self.endpoint.bytes_per_token) + PER_MESSAGE_TOKENS * (len(messages) + 1)

    def prefill(self, messages: Messages) -> None:
        """Nothing: the server keeps its own prefix cache (vLLM's automatic prefix caching,
        llama.cpp's prompt cache) from the requests themselves."""

    def generate(self, prompts: list[Messages], **overrides) -> list[str]:
        """Greedy completions, one request per prompt, all at once (``max_new_tokens`` may be overridden)."""
        unsupported = set(overrides) - {"max_new_tokens", "do_sample"} or overrides.get("do_sample")
        if unsupported:
            raise ValueError(f"The openai backend decodes greedily; unsupported settings {overrides}.")
        max_tokens = int(overrides.get("max_new_tokens", self.max_new_tokens))
        bodies = [self._body(messages, max_tokens, temperature=0.0) for messages in prompts]
        return [choices[0].text for choices in self._all([lambda b=b: self._complete(b) for b in bodies])]

    def sample(self, prompts: list[Messages], k: int, temperature: float, seed: int) -> list[list[Sample]]:
        """``k`` completions of each prompt: the greedy one first, then ``k - 1`` drawn at
        ``temperature``, prompt j's draws seeded ``seed + j * k + 1`` onwards."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}.")
        per_request = k - 1 if self.endpoint.n else 1
        requests = []
        for j, messages in enumerate(prompts):
            requests.append((j, self._body(messages, self.max_new_tokens, 0.0, logprobs=True)))
            for first in range(1, k, max(1, per_request)):
                n = min(per_request, k - first)
                requests.append((j, self._body(messages, self.max_new_tokens, temperature, n, seed + j * k + first, True)))
        drawn: list[list[Choice]] = [[] for _ in prompts]
        for (j, _), choices in zip(requests, self._all([lambda b=b: self._complete(b) for _, b in requests])):
            drawn[j] += choices
        # A server that ignores n answers with fewer choices: the rest, one request each.
        missing = [(j, i) for j in range(len(prompts)) for i in range(len(drawn[j]), k)]
        bodies = [self._body(prompts[j], self.max_new_tokens, temperature, 1, seed + j * k + i, True) for j, i in missing]
        for (j, _), choices in zip(missing, self._all([lambda b=b: self._complete(b) for b in bodies])):
            drawn[j] += choices
        return [[ServedSample(c.text, c.logprob, (), c.tokens) for c in choices[:k]] for choices in drawn]

    # -- requests -----------------------------------------------------------------------

    def _body(self, messages: Messages, max_tokens: int, temperature: float, n: int = 1, seed: int | None = None,
              logprobs: bool = False) -> dict:
        body = {**self.endpoint.extra_body, "model": self.endpoint.model, "messages": messages,
                "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if logprobs and self.endpoint.logprobs:
            body.update(logprobs=True, top_logprobs=1)  # llama-cpp-python returns none without top_logprobs
        return body

    def _all(self, calls: list[Callable]) -> list:
        """Every call's result, in order, the calls running at once (within ``concurrency``)."""
        if len(calls) <= 1:
            return [call() for call in calls]
        with ThreadPoolExecutor(max_workers=min(len(calls), self.endpoint.concurrency)) as pool:
            return list(pool.map(lambda call: call(), calls))

    def _complete(self, body: dict) -> list[Choice]:
        """One chat completion's choices, retried with backoff on failures worth retrying."""
        started = time.monotonic()
        attempts = self.endpoint.retries + 1
        for attempt in range(attempts):
            try:
                with self.slots:
                    return self._stream(body)
            except RetryableError as error:
                problem = error
                if attempt + 1 < attempts:
                    wait = self.endpoint.backoff_s * 2**attempt
                    time.sleep(min(error.retry_after, MAX_RETRY_AFTER_S) if error.retry_after is not None else wait)
        raise ModelUnavailableError(
            f"The model server {self.endpoint.where} did not answer: {problem} "
            f"({attempts} attempts over {time.monotonic() - started:.1f} s). Is it running, and is base_url right?"
        )

    def _stream(self, body: dict) -> list[Choice]:
        deadline = time.monotonic() + self.endpoint.timeout_s
        wanted = body.get("n", 1)
        try:
            with self.client.stream("POST", self.url, json=body, headers=self.headers) as response:
                if response.status_code != 200:
                    self._refused(response)
                choices = read_stream(response.iter_lines(), wanted, deadline)
        except httpx.TimeoutException as error:
            raise RetryableError(f"timed out ({type(error).__name__}, limit {self.endpoint.timeout_s:g} s)") from None
        except httpx.TransportError as error:
            raise RetryableError(f"{type(error).__name__}: {error}") from None
        except json.JSONDecodeError as error:
            raise RetryableError(f"it sent something other than JSON chunks ({error})") from None
        if not choices or not all(choice.done for choice in choices.values()):
            raise RetryableError("the stream ended before the answer did (llama-cpp-python's server does that to "
                                 "concurrent requests unless started with --interrupt_requests False)")
        return [choices[i] for i in sorted(choices)]

    def _refused(self, response: httpx.Response) -> None:
        response.read()
        detail = f"HTTP {response.status_code}: {response.text[:500]}"
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(detail, retry_after=_seconds(response.headers.get("retry-after")))
        hint = f" Check the key in {self.endpoint.api_key_env}." if response.status_code in (401, 403) and self.endpoint.api_key_env else ""
        raise ModelUnavailableError(f"The model server {self.endpoint.where} refused the request ({detail}).{hint}")


def exact_counter(spec: ModelSpec) -> Callable[[Messages], int] | None:
    """Counts a prompt's tokens as the served model reads them, or None when this machine has
    neither the base's GGUF (with llama-cpp-python) nor its tokenizer files."""
    from text2sql.engine import llama_cpp_installed

    if llama_cpp_installed() and (spec.base.embedded or spec.base.path):
        from text2sql.backends.llama_runtime import LlamaModel
        from text2sql.backends.llamacpp import ChatTemplate, base_gguf

        try:
            gguf, _ = base_gguf(spec)
        except ModelUnavailableError:  # a path to safetensors: transformers below
            pass
        else:
            model = LlamaModel(gguf, vocab_only=True)
            template = ChatTemplate(model.chat_template(), model.special_tokens())
            return lambda messages: len(model.tokenize(template.render(messages)))
    folder = _tokenizer_folder(spec)
    if folder is None:
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return lambda messages: len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                               return_dict=True)["input_ids"])


def _tokenizer_folder(spec: ModelSpec):
    """A local folder with the base's tokenizer: its ``path``, or its Hub repo's tokenizer files
    at the pinned revision (only from the local cache when the Hub can't be reached)."""
    from pathlib import Path

    from text2sql.registry import hub_offline

    base = spec.base
    if base.path and (spec.registry_dir / base.path / "tokenizer_config.json").is_file():
        return spec.registry_dir / base.path
    if not base.repo_id:
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(base.repo_id, revision=base.revision, allow_patterns=TOKENIZER_FILES,
                                      local_files_only=hub_offline()))
    except Exception:  # noqa: BLE001 - not cached and not reachable: the estimate instead
        return None


def _seconds(retry_after: str | None) -> float | None:
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:  # an HTTP date: wait the usual backoff instead
        return None
