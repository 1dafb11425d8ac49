"""The transformers backend: the base model once per process (CUDA when present, else the CPU
in ``text2sql.engine.inference_dtype``), LoRA adapters attached with peft and switched under
one lock, the schema prefix's KV cache kept per adapter, and best-of-k decoded in one batch.

Used for training-time checks, on CUDA machines, and as the named ``*-transformers`` registry
entries; ``text2sql.engine`` loads it lazily for registry entries whose backend is
``transformers``.

    from text2sql.engine import load_generator
    gen = load_generator("qwen2.5-coder-0.5b-spider-transformers")
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from text2sql.backends import MIN_REUSED_PREFIX, common_prefix_length
from text2sql.engine import Sample, inference_dtype
from text2sql.prompt import Messages
from text2sql.registry import ModelSpec, resolve_weights
from text2sql.settings import get_settings
from text2sql.sqlout import sql_is_complete


class _LoadedBase:
    """One base model + tokenizer in memory, shared by every registry entry that uses it."""

    cache: dict[Path, _LoadedBase] = {}

    def __init__(self, path: Path, hub_id: str | None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = inference_dtype()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # batched generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        if hub_id:
            self.model.name_or_path = hub_id  # adapters trained on it then name the real base
        self.peft = None  # a PeftModel wrapping self.model once an adapter is attached
        self.adapters: set[str] = set()
        self.lock = threading.Lock()

    @classmethod
    def get(cls, path: Path, hub_id: str | None) -> _LoadedBase:
        if path not in cls.cache:
            cls.cache[path] = cls(path, hub_id)
        return cls.cache[path]

    def add_adapter(self, name: str, path: Path) -> None:
        # peft's own multi-adapter API: transformers 5.24's integration wants peft>=0.22,
        # newer than any release.
        from peft import PeftModel

        with self.lock:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
            elif name not in self.peft.peft_config:
                self.peft.load_adapter(str(path), adapter_name=name)
            self.adapters.add(name)

    @contextlib.contextmanager
    def using(self, adapter: str | None) -> Iterator:
        """Hold the model with ``adapter`` active (None: the plain base)."""
        with self.lock:
            if self.peft is None:
                yield self.model
            elif adapter:
                self.peft.set_adapter(adapter)
                yield self.peft
            else:
                with self.peft.disable_adapter():
                    yield self.peft


class _StopAtEndOfSQL:
    """A stopping criterion: each sequence stops once its new text holds a complete statement."""

    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([sql_is_complete(t) for t in texts], dtype=torch.bool, device=input_ids.device)


class TransformersGenerator:
    def __init__(self, spec: ModelSpec):
        base_weights = resolve_weights(spec.base, spec.registry_dir, kind=f"base model of {spec.name}")
        self.spec = spec
        self.base = _LoadedBase.get(base_weights.path, spec.base.repo_id)
        self.origin = base_weights.origin
        self.adapter_name = None
        if spec.adapter:
            adapter = resolve_weights(spec.adapter, spec.registry_dir, kind=f"adapter of {spec.name}")
            # peft names modules after the adapter, and a module name can't hold "."
            self.adapter_name = re.sub(r"\W", "_", spec.name)
            self.base.add_adapter(self.adapter_name, adapter.path)
            self.origin += f" + LoRA adapter from {adapter.origin}"
        self.max_new_tokens = int(spec.generation.get("max_new_tokens", get_settings().max_new_tokens))
        context = getattr(self.base.model.config, "max_position_embeddings", 4096)
        self.max_prompt_tokens = min(get_settings().max_prompt_tokens, context - self.max_new_tokens)
        self.prefixes = PrefixStore()  # KV caches depend on the adapter, so each generator keeps its own
        import transformers

        self.engine = f"transformers {transformers.__version__} ({str(self.base.dtype).removeprefix('torch.')}, {self.base.device})"

    @property
    def tokenizer(self):
        return self.base.tokenizer

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def token_ids(self, messages: Messages) -> list[int]:
        """The prompt's token ids as the model reads them."""
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def count_tokens(self, messages: Messages) -> int:
        return len(self.token_ids(messages))

    def prefill(self, messages: Messages) -> None:
        """Compute and store the KV cache of ``messages``' prompt (all but its last token), so a
        later question about the same database only computes its own tokens."""
        import torch

        with self.base.using(self.adapter_name) as model, torch.inference_mode():
            self._prefix_cache(model, self.token_ids(messages)[:-1])

    def generate(
        self, prompts: list[Messages], *, reuse_prefix: bool = True, on_text: Callable[[str], None] | None = None,
        **overrides,
    ) -> list[str]:
        """Raw completions for a batch of chat prompts.

        With ``reuse_prefix`` (the default) and greedy decoding, the prompts' shared leading
        tokens (system prompt and schema, for questions about one database) are run through
        the model once and their KV cache is kept for later calls that start the same way;
        only the rest of each prompt is computed per question, and a finished answer leaves
        the batch at once. Otherwise (sampling or other decoding settings, or
        ``reuse_prefix=False``) the left-padded prompts go through one plain ``generate``.
        ``on_text`` (the first path only) hears the first prompt's text so far after each step.
        """
        import torch

        settings = self._generation_settings(overrides)
        token_ids = [self.token_ids(m) for m in prompts]
        shared = common_prefix_length(token_ids)
        greedy = set(settings) <= {"max_new_tokens", "do_sample"} and not settings["do_sample"]
        with self.base.using(self.adapter_name) as model, torch.inference_mode():
            if reuse_prefix and greedy and shared >= MIN_REUSED_PREFIX:
                new_tokens, _ = self._decode_after_prefix(model, token_ids, shared, settings["max_new_tokens"],
                                                          on_text=on_text)
            else:
                new_tokens = self._plain_generate(model, token_ids, settings)
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def _generation_settings(self, overrides: dict) -> dict:
        settings = {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        settings.update({k: v for k, v in self.spec.generation.items() if k != "max_new_tokens"})
        settings.update(overrides)
        return settings

    def _plain_generate(self, model, token_ids: list[list[int]], settings: dict):
        """One ``generate`` call on the left-padded prompts; the new tokens of each row."""
        from transformers import GenerationConfig, StoppingCriteriaList

        config = GenerationConfig(
            **settings, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id
        )
        batch = self.tokenizer.pad({"input_ids": token_ids}, padding=True, return_tensors="pt").to(self.base.device)
        prompt_length = batch["input_ids"].shape[1]
        stop = StoppingCriteriaList([_StopAtEndOfSQL(self.tokenizer, prompt_length)])
        output = model.generate(**batch, generation_config=config, stopping_criteria=stop)
        return output[:, prompt_length:]

    def sample(
        self, prompts: list[Messages], k: int, temperature: float, seed: int, on_text: Callable[[str], None] | None = None
    ) -> list[list[Sample]]:
        """``k`` completions of each prompt: the greedy one first, then ``k - 1`` sampled at
        ``temperature`` (a seeded draw: the same call gives the same samples). ``on_text``, if
        given, hears the first completion's text so far after every decoding step (the app
        shows the SQL as it is written).

        One decoding batch serves them all: the prompts' shared prefix comes from the prefix
        store (computed once per schema), each prompt's own tokens are run once, and then
        ``len(prompts) * k`` rows decode together, each leaving the batch when it is done.
        """
        import torch

        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}.")
        token_ids = [self.token_ids(m) for m in prompts]
        shared = common_prefix_length(token_ids)
        with self.base.using(self.adapter_name) as model, torch.inference_mode():
            rows, logprobs = self._decode_after_prefix(
                model, token_ids, shared, self.max_new_tokens, copies=k, temperature=temperature, seed=seed,
                on_text=on_text,
            )
        texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
        samples = [Sample(text, logprob, tuple(row)) for text, logprob, row in zip(texts, logprobs, rows)]
        return [samples[i * k : (i + 1) * k] for i in range(len(prompts))]

    def _decode_after_prefix(
        self,
        model,
        token_ids: list[list[int]],
        shared: int,
        max_new_tokens: int,
        *,
        copies: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[list[list[int]], list[float]]:
        """New tokens and their summed log-probabilities for ``copies`` outputs per prompt
        (output ``i * copies`` greedy, the others sampled at ``temperature``), starting from
        the cached KV of the prompts' first ``shared`` tokens.

        The rows are [shared prefix][padding][rest of the prompt]: the prefix sits at the same
        positions in every row, so one cache serves them all; the padding is masked out and
        skipped when numbering positions. A row of the batch carries every output that has
        written the same tokens so far, and forks (its cache copied) only when their next
        tokens differ: the outputs of one prompt start as one row, and candidates that agree
        (most of them, at moderate temperatures) cost one row, not one each. A row stops as
        ``generate`` would (end-of-turn token, end of the first SQL statement, or
        ``max_new_tokens``) and then leaves the batch.
        """
        import torch

        device = self.base.device
        cache = self._prefix_cache(model, token_ids[0][:shared])
        cache.batch_repeat_interleave(len(token_ids))
        rests = [ids[shared:] for ids in token_ids]
        width = max(len(rest) for rest in rests)
        pad = self.tokenizer.pad_token_id
        inputs = torch.tensor([[pad] * (width - len(r)) + r for r in rests], device=device)
        mask = torch.tensor([[1] * shared + [0] * (width - len(r)) + [1] * len(r) for r in rests], device=device)
        positions = (mask.cumsum(-1) - 1)[:, shared:]
        logits = self._next_logits(model, inputs, mask, positions, cache)
        rows = [list(range(i * copies, (i + 1) * copies)) for i in range(len(token_ids))]  # outputs per row
        pick = _TokenPicker(copies, temperature, seed)
        outputs: list[list[int]] = [[] for _ in range(len(token_ids) * copies)]
        logprobs = [0.0] * len(outputs)
        for step in range(max_new_tokens):
            parents, tokens, next_rows = [], [], []
            for parent, token, token_logprob, members in pick(logits, rows):
                for output in members:
                    outputs[output].append(token)
                    logprobs[output] += token_logprob
                if token != self.tokenizer.eos_token_id and not sql_is_complete(
                    self.tokenizer.decode(outputs[members[0]], skip_special_tokens=True)
                ):
                    parents.append(parent)
                    tokens.append(token)
                    next_rows.append(members)
            if on_text:
                on_text(self.tokenizer.decode(outputs[0], skip_special_tokens=True))
            if not next_rows or step + 1 == max_new_tokens:
                break
            if parents != list(range(len(rows))):  # rows finished or forked
                index = torch.tensor(parents, device=device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
            rows = next_rows
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            positions = positions[:, -1:] + 1
            logits = self._next_logits(model, torch.tensor(tokens, device=device)[:, None], mask, positions, cache)
        return outputs, logprobs

    @staticmethod
    def _next_logits(model, inputs, mask, positions, cache):
        """The next-token logits of each row after feeding ``inputs`` (the cache grows)."""
        return model(
            input_ids=inputs, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
        ).logits[:, -1]

    def _prefix_cache(self, model, prefix: list[int]):
        """A fresh DynamicCache holding ``prefix``'s keys and values, built on the longest
        stored prefix it extends; ``prefix`` is then stored for later calls."""
        import torch
        from transformers import DynamicCache

        if not prefix:  # prompts with nothing in common: nothing to cache or store
            return DynamicCache(config=self.base.model.config)
        reused, stored = self.prefixes.longest_match(prefix)
        # Slices of the stored tensors: the cache copies them on its first update, so the
        # store is never written to.
        data = [(keys[..., :reused, :], values[..., :reused, :]) for keys, values in stored] if reused else None
        cache = DynamicCache(ddp_cache_data=data, config=self.base.model.config)
        if reused < len(prefix):
            rest = torch.tensor([prefix[reused:]], device=self.base.device)
            model(input_ids=rest, cache=cache, use_cache=True, logits_to_keep=1)  # logits of the prefix aren't needed
        self.prefixes.add(prefix, [(layer.keys, layer.values) for layer in cache.layers])
        return cache


class _TokenPicker:
    """Chooses the next token of every output a row carries: the argmax for greedy outputs
    (``output % copies == 0``, or all of them at temperature 0), an independent draw at
    ``temperature`` for the others (one generator, seeded once per call)."""

    def __init__(self, copies: int, temperature: float, seed: int):
        import torch

        self.copies = copies
        self.temperature = temperature
        self.random = torch.Generator().manual_seed(seed)

    def _sampled(self, output: int) -> bool:
        return self.temperature > 0 and output % self.copies != 0

    def __call__(self, logits, rows: list[list[int]]):
        """(row, token, the token's log-probability at temperature 1, outputs that chose it)
        for each distinct choice within each row, in row order."""
        import torch

        logits = logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        greedy = logits.argmax(-1).tolist()
        draws = self._draws(logits, rows)
        choices = []
        for row, members in enumerate(rows):
            drawn = iter(draws.get(row, []))
            by_token: dict[int, list[int]] = {}
            for output in members:
                by_token.setdefault(next(drawn) if self._sampled(output) else greedy[row], []).append(output)
            choices += [(row, token, logprobs[row, token].item(), chosen) for token, chosen in by_token.items()]
        return choices

    def _draws(self, logits, rows: list[list[int]]) -> dict[int, list[int]]:
        """Row -> one draw per sampled output it carries, from one batched ``multinomial``."""
        import torch

        wanted = {row: sum(map(self._sampled, members)) for row, members in enumerate(rows)}
        wanted = {row: n for row, n in wanted.items() if n}
        if not wanted:
            return {}
        probabilities = torch.softmax(logits[list(wanted)].to("cpu") / self.temperature, dim=-1)
        drawn = torch.multinomial(probabilities, max(wanted.values()), replacement=True, generator=self.random)
        return {row: drawn[i, :n].tolist() for i, (row, n) in enumerate(wanted.items())}


class PrefixStore:
    """Keys and values of the most recent prompt prefixes of one model + adapter (about 25 MB
    per thousand tokens for Qwen2.5-0.5B in fp32), so questions about a database already asked
    about skip recomputing its schema."""

    def __init__(self, size: int = 4):
        self.size = size
        self.entries: list[tuple[list[int], list]] = []

    def longest_match(self, prefix: list[int]) -> tuple[int, list | None]:
        """How many leading tokens of ``prefix`` a stored entry covers (the best one), and its layers."""
        best, layers = 0, None
        for ids, stored in self.entries:
            length = 0
            limit = min(len(ids), len(prefix))
            while length < limit and ids[length] == prefix[length]:
                length += 1
            if length > best:
                best, layers = length, stored
        return best, layers

    def add(self, prefix: list[int], layers: list) -> None:
        self.entries = [(prefix, layers)] + [e for e in self.entries if e[0] != prefix][: self.size - 1]
