"""A fake SQL generator for tests about something other than the model (CLI, UI, REST).

Queue canned outputs with ``FakeGenerator.enqueue("SELECT ...")``; every prompt it
receives is kept in ``FakeGenerator.history``. With an empty queue it answers
``SELECT 1``.
"""

from __future__ import annotations

from collections import deque

from text2sql.registry import ModelSpec


class FakeGenerator:
    queue: deque = deque()
    history: list = []

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.origin = "fake model for tests"
        self.max_prompt_tokens = 100_000

    @classmethod
    def enqueue(cls, *outputs: str) -> None:
        cls.queue.extend(outputs)

    @classmethod
    def reset(cls) -> None:
        cls.queue.clear()
        cls.history.clear()

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, prompts, **overrides) -> list[str]:
        self.history.extend(prompts)
        return [self.queue.popleft() if self.queue else "SELECT 1" for _ in prompts]
