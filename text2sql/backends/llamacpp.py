"""The llama.cpp backend: GGUF models on the CPU, LoRA adapters as GGUF adapters, the schema
prefix's KV state kept per database, best-of-k as one multi-sequence batch.

- **Weights**: the base GGUF as it is: an ``embedded`` copy (joined once, sha256-checked:
  ``text2sql.embedded.embedded_gguf``) or a ``path`` to a .gguf file or a folder holding one
  (Hub ``repo_id``s are not read here: they name safetensors). Every registry entry on one
  base shares one loaded model; each has its own context with its adapter applied. A peft
  adapter folder is converted to a GGUF adapter with llama.cpp's converter on first use and
  cached (``text2sql.lora_gguf``), unless it ships an ``adapter_model.gguf``.
- **Prompt**: ``build_messages`` rendered with the model's own chat template (from the GGUF)
  and tokenized by llama.cpp; tests check the ids equal the transformers backend's.
- **Prefix reuse**: the prompts' shared leading tokens (system prompt + schema) are computed
  once and their KV state saved (``PrefixStates``: least recently used dropped first, within
  ``prefix_cache_mb``); a later call that starts the same way restores it and computes only
  its own tokens. ``prefill`` does that ahead of time (when a database is chosen).
- **Decoding**: every prompt's output rows decode together, one token per row per step; a
  row carries all candidates that wrote the same tokens so far and forks (its cells shared,
  not copied) when they part, as the transformers backend does. Greedy picks the argmax;
  best-of-k's others are drawn at the temperature from one seeded generator. Each candidate's
  log-likelihood is the sum of its tokens' log-probabilities at temperature 1.

    from text2sql.engine import load_generator
    gen = load_generator("qwen2.5-coder-0.5b-spider")      # backend auto: llama.cpp here
    gen.prefill(messages)                                  # warm the database's prefix
    gen.generate([messages]); gen.sample([messages], k=8, temperature=0.8, seed=0)
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

import numpy as np

from text2sql.backends import MIN_REUSED_PREFIX, common_prefix_length
from text2sql.backends.llama_runtime import LlamaContext, LlamaModel, backend_features, load_library
from text2sql.engine import Sample
from text2sql.errors import ModelUnavailableError
from text2sql.prompt import Messages
from text2sql.registry import ModelSpec, WeightsSpec, resolve_weights
from text2sql.settings import get_settings
from text2sql.sqlout import sql_is_complete


MAX_ROWS = 64
"""Sequences decoding at once (prompts x candidates); larger batches are split."""
MAX_CONTEXT_TOKENS = 16384
"""The most KV cells a context grows to: the prompts of a batch plus every row's new tokens
(Qwen2.5-Coder-0.5B: 12 KB a cell, 192 MB; the 1.5B: 28 KB, 448 MB)."""
FIRST_CONTEXT_TOKENS = 4096
"""KV cells a context starts with: a question's prompt and its answer, or a short prompt's best
of 8. It doubles when a batch needs more, so a server answering one question at a time keeps
a quarter of the cache an evaluation's batches of 16 prompts need."""

_models: dict[Path, LlamaModel] = {}
_models_lock = threading.Lock()


def unload() -> None:
    """Forget the loaded models (each is freed once no generator holds it)."""
    with _models_lock:
        _models.clear()


def shared_model(path: Path) -> LlamaModel:
    with _models_lock:
        if path not in _models:
            _models[path] = LlamaModel(path)
        return _models[path]


def base_gguf(spec: ModelSpec) -> tuple[Path, str]:
    """The base model's GGUF file and where it came from, in words."""
    base: WeightsSpec = spec.base
    if base.path:
        path = (spec.registry_dir / base.path).resolve()
        files = [path] if path.is_file() else sorted(path.glob("*.gguf")) if path.is_dir() else []
        if len(files) != 1:
            raise ModelUnavailableError(
                f"The base model of {spec.name} for llama.cpp must be a .gguf file or a folder holding exactly one; "
                f"{path} {'holds ' + str(len(files)) if path.is_dir() else 'does not exist'}."
            )
        return files[0], f"local file {files[0].name}"
    if base.embedded:
        from text2sql import embedded

        return embedded.embedded_gguf(base.embedded), f"embedded copy of {embedded.EMBEDDED[base.embedded].upstream} from PyPI"
    raise ModelUnavailableError(
        f"{spec.name}: llama.cpp reads GGUF files; give its base an embedded copy or a path to a .gguf file."
    )


def adapter_gguf(spec: ModelSpec, base: Path) -> tuple[Path, str]:
    """The entry's LoRA adapter as a GGUF adapter (shipped beside it, or converted and cached)."""
    from text2sql import lora_gguf

    folder = resolve_weights(spec.adapter, spec.registry_dir, kind=f"adapter of {spec.name}")
    shipped = folder.path / lora_gguf.GGUF_NAME
    if shipped.is_file():
        return shipped, folder.origin
    return lora_gguf.cached_conversion(folder.path, base), f"{folder.origin}, converted to GGUF"


class ChatTemplate:
    """The model's chat template rendered as transformers renders it (``apply_chat_template``)."""

    def __init__(self, source: str, special_tokens: dict[str, str]):
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ValueError(message)

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
        environment.globals["raise_exception"] = raise_exception
        self.template = environment.from_string(source)
        self.special_tokens = special_tokens

    def render(self, messages: Messages) -> str:
        return self.template.render(messages=messages, add_generation_prompt=True, **self.special_tokens)


@dataclasses.dataclass
class _Stored:
    tokens: list[int]
    state: object
    """The sequence's saved KV state (a ctypes byte array)."""


class PrefixStates:
    """KV states of recently used prompt prefixes, most recent first, within ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: list[_Stored] = []

    @property
    def nbytes(self) -> int:
        return sum(len(e.state) for e in self.entries)

    def longest_match(self, tokens: list[int]) -> tuple[_Stored | None, int]:
        """The entry sharing the most leading tokens with ``tokens``, and how many."""
        best, length = None, 0
        for entry in self.entries:
            shared = _shared_length(entry.tokens, tokens)
            if shared > length:
                best, length = entry, shared
        return best, length

    def put(self, tokens: list[int], state, replacing: _Stored | None = None) -> None:
        self.entries = [e for e in self.entries if e is not replacing and e.tokens != tokens]
        if len(state) <= self.max_bytes:
            self.entries.insert(0, _Stored(tokens, state))
        while self.nbytes > self.max_bytes:
            self.entries.pop()

    def touch(self, entry: _Stored) -> None:
        self.entries.remove(entry)
        self.entries.insert(0, entry)


def _shared_length(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


@dataclasses.dataclass
class _Row:
    seq: int
    position: int
    """Where its next token goes."""
    outputs: list[int]
    """The candidates it carries (they have written the same tokens so far)."""


class LlamaCppGenerator:
    def __init__(self, spec: ModelSpec):
        library = load_library()
        unsupported = set(spec.generation) - {"max_new_tokens", "do_sample"} or spec.generation.get("do_sample")
        if unsupported:
            raise ValueError(f"{spec.name}: the llama.cpp backend decodes greedily (best-of-k: sample); "
                             f"unsupported generation settings {spec.generation}.")
        settings = get_settings()
        self.spec = spec
        gguf, self.origin = base_gguf(spec)
        self.model = shared_model(gguf)
        adapter = None
        if spec.adapter:
            adapter_path, adapter_origin = adapter_gguf(spec, gguf)
            adapter = self.model.adapter(adapter_path)
            self.origin += f" + LoRA adapter from {adapter_origin}"
        self.max_new_tokens = int(spec.generation.get("max_new_tokens", settings.max_new_tokens))
        threads = settings.threads or len(os.sched_getaffinity(0))
        self.adapter, self.threads = adapter, threads
        self.context = LlamaContext(self.model, adapter, FIRST_CONTEXT_TOKENS, MAX_ROWS + 1, threads)
        self.max_prompt_tokens = min(settings.max_prompt_tokens, self.model.n_ctx_train - self.max_new_tokens)
        self.template = ChatTemplate(self.model.chat_template(), self.model.special_tokens())
        self.prefixes = PrefixStates(settings.prefix_cache_mb * 2**20)  # states depend on the adapter: one store each
        self.lock = threading.Lock()
        levels = [f for f in ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8") if f in backend_features()]
        self.engine = (f"llama.cpp (llama-cpp-python {library.__version__}; {self.model.describe()}; "
                       f"CPU backend {'+'.join(levels) or 'without AVX2'}; {threads} threads)")

    def render(self, messages: Messages) -> str:
        return self.template.render(messages)

    def token_ids(self, messages: Messages) -> list[int]:
        """The prompt's token ids as the model reads them."""
        return self.model.tokenize(self.render(messages))

    def count_tokens(self, messages: Messages) -> int:
        return len(self.token_ids(messages))

    def prefill(self, messages: Messages) -> None:
        """Compute and store the KV state of ``messages``' prompt (all but its last token), so a
        later question about the same database only computes its own tokens."""
        prefix = self.token_ids(messages)[:-1]
        if len(prefix) < MIN_REUSED_PREFIX:
            return
        with self.lock:
            self._context_for(len(prefix)).clear()
            self._restore_prefix(prefix)
            self.context.clear()

    def generate(self, prompts: list[Messages], **overrides) -> list[str]:
        """Greedy completions of a batch of chat prompts (``max_new_tokens`` may be overridden)."""
        unsupported = set(overrides) - {"max_new_tokens", "do_sample"} or overrides.get("do_sample")
        if unsupported:
            raise ValueError(f"The llama.cpp backend decodes greedily; unsupported settings {overrides}.")
        max_new_tokens = int(overrides.get("max_new_tokens", self.max_new_tokens))
        outputs, _ = self._decode([self.token_ids(m) for m in prompts], max_new_tokens, 1, 0.0, 0)
        return [self._text(tokens) for tokens in outputs]

    def sample(self, prompts: list[Messages], k: int, temperature: float, seed: int) -> list[list[Sample]]:
        """``k`` completions of each prompt: the greedy one first, then ``k - 1`` drawn at
        ``temperature`` (seeded: the same call gives the same samples), all in one batch."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}.")
        outputs, logprobs = self._decode([self.token_ids(m) for m in prompts], self.max_new_tokens, k, temperature, seed)
        samples = [Sample(self._text(tokens), logprob, tuple(tokens)) for tokens, logprob in zip(outputs, logprobs)]
        return [samples[i * k : (i + 1) * k] for i in range(len(prompts))]

    def next_token_logprobs(self, prompts: list[Messages], texts: list[str]) -> list[list[float]]:
        """For each prompt, the log-probability (temperature 1) that its reply starts with the
        first token of each of ``texts`` (e.g. "A" and "B": a judge's verdict as a score)."""
        tokens = [self.model.tokenize(text)[0] for text in texts]
        seen: list[np.ndarray] = []

        def keep_logits(logits: np.ndarray, rows: list[list[int]]) -> list[tuple[int, int, float, list[int]]]:
            peak = logits.max(axis=1, keepdims=True)
            seen.append(logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))
            return [(row, int(logits[row].argmax()), 0.0, members) for row, members in enumerate(rows)]

        with self.lock:
            for group in self._groups([self.token_ids(m) for m in prompts], 1, 1):
                self._decode_group(group, 1, 1, keep_logits)
        return [[float(row[t]) for t in tokens] for logprobs in seen for row in logprobs]

    def _text(self, tokens: list[int]) -> str:
        return b"".join(self.model.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def _decode(self, token_ids, max_new_tokens, copies, temperature, seed) -> tuple[list[list[int]], list[float]]:
        """Outputs (token ids) and their log-likelihoods, ``copies`` per prompt, in groups of
        prompts that fit the context (each group one batch)."""
        pick = _TokenPicker(copies, temperature, seed)
        outputs, logprobs = [], []
        with self.lock:
            for group in self._groups(token_ids, max_new_tokens, copies):
                group_outputs, group_logprobs = self._decode_group(group, max_new_tokens, copies, pick)
                outputs += group_outputs
                logprobs += group_logprobs
        return outputs, logprobs

    def _groups(self, token_ids: list[list[int]], max_new_tokens: int, copies: int):
        """Consecutive prompts, as many at a time as ``MAX_ROWS`` rows and the KV cells allow."""
        group: list[list[int]] = []
        for ids in token_ids:
            candidate = group + [ids]
            cells = sum(map(len, candidate)) + len(candidate) * copies * max_new_tokens
            if group and (len(candidate) * copies > MAX_ROWS or cells > MAX_CONTEXT_TOKENS):
                yield group
                candidate = [ids]
            group = candidate
        if group:
            yield group

    def _context_for(self, cells: int) -> LlamaContext:
        """The context, grown first (doubling, up to ``MAX_CONTEXT_TOKENS``) if it has fewer than
        ``cells`` KV cells. Stored prefixes are copies, so they outlive the old one."""
        size = self.context.n_ctx
        if cells > size:
            while size < min(cells, MAX_CONTEXT_TOKENS):
                size *= 2
            self.context = None  # the old cache goes before the new one is allocated
            self.context = LlamaContext(self.model, self.adapter, min(size, MAX_CONTEXT_TOKENS), MAX_ROWS + 1,
                                        self.threads)
        return self.context

    def _decode_group(self, token_ids, max_new_tokens, copies, pick) -> tuple[list[list[int]], list[float]]:
        context = self._context_for(sum(map(len, token_ids)) + len(token_ids) * copies * max_new_tokens)
        context.clear()
        shared = common_prefix_length(token_ids)
        start = self._restore_prefix(token_ids[0][:shared]) if shared >= MIN_REUSED_PREFIX else 0
        free_seqs = list(range(MAX_ROWS, 0, -1))  # sequence 0 holds the prefix
        rows, feeds = [], []
        for i, ids in enumerate(token_ids):
            seq = free_seqs.pop()
            if start:
                context.copy_seq(0, seq)
            rows.append(_Row(seq, len(ids), list(range(i * copies, (i + 1) * copies))))
            feeds.append((seq, ids[start:], start))
        context.remove_seq(0)
        logits = context.feed(feeds)
        outputs: list[list[int]] = [[] for _ in range(len(token_ids) * copies)]
        logprobs = [0.0] * len(outputs)
        for step in range(max_new_tokens):
            continuing: list[tuple[_Row, int]] = []
            seq_taken = set()
            for parent, token, token_logprob, members in pick(logits, [row.outputs for row in rows]):
                for output in members:
                    outputs[output].append(token)
                    logprobs[output] += token_logprob
                if step + 1 == max_new_tokens or self.model.is_end(token) or sql_is_complete(self._text(outputs[members[0]])):
                    continue
                row = rows[parent]
                if row.seq in seq_taken:  # the candidates part: the new row shares the parent's cells
                    seq = free_seqs.pop()
                    context.copy_seq(row.seq, seq)
                else:
                    seq = row.seq
                    seq_taken.add(seq)
                continuing.append((_Row(seq, row.position, members), token))
            for row in rows:
                if row.seq not in seq_taken:
                    context.remove_seq(row.seq)
                    free_seqs.append(row.seq)
            if not continuing:
                break
            rows = [row for row, _ in continuing]
            logits = context.feed([(row.seq, [token], row.position) for row, token in continuing])
            for row in rows:
                row.position += 1
        context.clear()
        return outputs, logprobs

    def _restore_prefix(self, prefix: list[int]) -> int:
        """Put the KV of ``prefix``'s leading tokens into sequence 0 and return how many.

        A stored prefix that ``prefix`` extends is restored as it is. One it leaves part way,
        but past half of it (the same database, another question), is restored up to there and
        stored cut there: what remains is the database's own prefix. Otherwise (a new
        database) ``prefix`` is computed, on the shared part of the closest stored one when
        there is one, and stored.
        """
        context = self.context
        entry, matched = self.prefixes.longest_match(prefix)
        if entry is None or matched < MIN_REUSED_PREFIX:
            matched = 0
        else:
            context.set_state(0, entry.state)
            context.remove_seq(0, matched)
            if matched == len(entry.tokens):
                self.prefixes.touch(entry)
                return matched
            if 2 * matched >= len(entry.tokens):
                self.prefixes.put(entry.tokens[:matched], context.state(0), replacing=entry)
                return matched
        context.feed([(0, prefix[matched:], matched)], logits=False)
        self.prefixes.put(prefix, context.state(0))
        return len(prefix)


class _TokenPicker:
    """Chooses the next token of every output a row carries: the argmax for greedy outputs
    (``output % copies == 0``, or all at temperature 0), an independent draw at ``temperature``
    for the others (one generator, seeded once per call)."""

    def __init__(self, copies: int, temperature: float, seed: int):
        self.copies, self.temperature = copies, temperature
        self.random = np.random.default_rng(seed)

    def _sampled(self, output: int) -> bool:
        return self.temperature > 0 and output % self.copies != 0

    def __call__(self, logits: np.ndarray, rows: list[list[int]]) -> list[tuple[int, int, float, list[int]]]:
        """(row, token, the token's log-probability at temperature 1, outputs that chose it)
        for each distinct choice within each row, in row order."""
        peak = logits.max(axis=1, keepdims=True)
        log_normalizer = np.log(np.exp(logits - peak).sum(axis=1, dtype=np.float64)) + peak[:, 0]
        greedy = logits.argmax(axis=1)
        choices = []
        for row, members in enumerate(rows):
            drawn = iter(self._draws(logits[row], sum(map(self._sampled, members))))
            by_token: dict[int, list[int]] = {}
            for output in members:
                by_token.setdefault(int(next(drawn) if self._sampled(output) else greedy[row]), []).append(output)
            choices += [(row, token, float(logits[row, token] - log_normalizer[row]), chosen)
                        for token, chosen in by_token.items()]
        return choices

    def _draws(self, logits: np.ndarray, n: int) -> list[int]:
        if not n:
            return []
        weights = np.exp((logits.astype(np.float64) - logits.max()) / self.temperature)
        cumulative = np.cumsum(weights)
        drawn = np.searchsorted(cumulative, self.random.random(n) * cumulative[-1], side="right")
        return np.minimum(drawn, len(logits) - 1).tolist()
