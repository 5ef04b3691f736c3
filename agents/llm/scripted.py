"""A model double that answers from a script, for unit tests of control flow only.

Tests of the runtime's loop (repair attempts, forced submission, step limits)
need answers chosen by the test, not by a model; behaviour of real models is
tested against llama.cpp and a real HTTP server instead. The double records
every prompt and schema it was given so tests can assert on what was asked.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from agents.llm.base import Completion, Message, ModelError

Reply = str | Callable[[Sequence[Message]], str]


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class ScriptedModel:
    """Answers with `replies` in order; a callable reply is given the messages.

    >>> model = ScriptedModel(['{"summary": "..."}', lambda messages: "second answer"])
    >>> (await model.complete([{"role": "user", "content": "hi"}])).text
    '{"summary": "..."}'
    >>> model.prompts[0][0]["content"]
    'hi'
    """

    def __init__(self, replies: Sequence[Reply], *, name: str = "scripted") -> None:
        self._replies = list(replies)
        self._name = name
        self.prompts: list[list[Message]] = []
        self.schemas: list[dict[str, Any] | None] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def calls(self) -> int:
        return len(self.prompts)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion:
        text = self._next(messages, schema)
        prompt_chars = sum(len(message["content"]) for message in messages)
        return Completion(
            text=text,
            tokens_in=_approx_tokens("x" * prompt_chars),
            tokens_out=_approx_tokens(text),
            latency_s=0.0,
            model=self._name,
            finish_reason="stop",
        )

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[str, None]:
        text = self._next(messages, schema)
        for word in text.split(" ")[:-1]:
            yield word + " "
        yield text.split(" ")[-1]

    async def aclose(self) -> None:
        return None

    def _next(self, messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        if len(self.prompts) >= len(self._replies):
            raise ModelError(
                f"ScriptedModel ran out of replies after {len(self._replies)} calls; "
                "give the test one reply per expected model call"
            )
        reply = self._replies[len(self.prompts)]
        self.prompts.append([Message(role=m["role"], content=m["content"]) for m in messages])
        self.schemas.append(schema)
        return reply if isinstance(reply, str) else reply(messages)
