"""A fake SQL generator for tests about something other than the model (CLI, UI, REST,
best-of-k selection).

Queue canned outputs with ``FakeGenerator.enqueue("SELECT ...")``, or ``(text, logprob)``
pairs for ``sample``; every prompt it receives is kept in ``FakeGenerator.history`` and each
call in ``FakeGenerator.calls`` as ``(method, number of prompts, k)``. With an empty queue
it answers ``SELECT 1``. ``sample`` takes k outputs per prompt from the queue, in order; an
output queued without a log-likelihood gets ``-1 - its position among the k``. Prompts given
to ``prefill`` (warm-ups) go to ``FakeGenerator.prefilled``.
"""

from __future__ import annotations

from collections import deque

from text2sql.engine import Sample
from text2sql.registry import ModelSpec


class FakeGenerator:
    queue: deque = deque()
    history: list = []
    calls: list = []
    prefilled: list = []

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.origin = "fake model for tests"
        self.engine = "fake"
        self.max_prompt_tokens = 100_000

    @classmethod
    def enqueue(cls, *outputs) -> None:
        cls.queue.extend(outputs)

    @classmethod
    def reset(cls) -> None:
        cls.queue.clear()
        cls.history.clear()
        cls.calls.clear()
        cls.prefilled.clear()

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def _next(self, position: int) -> tuple[str, float]:
        output = self.queue.popleft() if self.queue else "SELECT 1"
        return output if isinstance(output, tuple) else (output, -1.0 - position)

    def prefill(self, messages) -> None:
        self.prefilled.append(messages)

    def generate(self, prompts, **overrides) -> list[str]:
        self.history.extend(prompts)
        self.calls.append(("generate", len(prompts), 1))
        return [self._next(0)[0] for _ in prompts]

    def sample(self, prompts, k: int, temperature: float, seed: int) -> list[list[Sample]]:
        self.history.extend(prompts)
        self.calls.append(("sample", len(prompts), k))
        samples = []
        for _ in prompts:
            outputs = [self._next(position) for position in range(k)]
            samples.append([Sample(text, logprob, tuple(range(len(text.split())))) for text, logprob in outputs])
        return samples
