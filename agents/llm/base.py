"""The contract every model backend meets, so the runtime never knows which one it talks to.

The Observer runs against an in-process GGUF model, an OpenAI-compatible server
or a scripted double; all three answer `complete` (one constrained answer with
token counts) and `stream` (text pieces as they are generated). Errors are typed
so the runtime can tell "retry later" (`ModelUnavailable`), "took too long"
(`ModelTimeout`) and "the request itself is wrong" (`ModelError`) apart, and each
message says what to do next.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    """One chat message, in the shape every OpenAI-style API and llama.cpp accept."""

    role: Role
    content: str


class ModelError(Exception):
    """A model call failed in a way that retrying the same request will not fix."""


class ModelUnavailable(ModelError):  # noqa: N818
    """The model cannot be reached or loaded (server down, file missing, not a GGUF)."""


class ModelTimeout(ModelError):  # noqa: N818
    """The model did not finish within the time allowed; its generation was stopped."""


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished answer: the text, what it cost, and why generation ended.

    `finish_reason` is "stop" (the model ended), "length" (max_tokens reached: a
    JSON answer is then probably cut off) or whatever the server reported.
    """

    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    model: str
    finish_reason: str | None = None


@dataclass(slots=True)
class Usage:
    """Running totals over many calls, e.g. one investigation's model cost.

    >>> usage = Usage()
    >>> usage.add(Completion("{}", tokens_in=30, tokens_out=2, latency_s=0.1, model="m"))
    >>> usage.tokens_total
    32
    """

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0

    @property
    def tokens_total(self) -> int:
        return self.tokens_in + self.tokens_out

    def add(self, completion: Completion) -> None:
        """Count one finished call."""
        self.calls += 1
        self.tokens_in += completion.tokens_in
        self.tokens_out += completion.tokens_out
        self.latency_s += completion.latency_s

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            latency_s=self.latency_s + other.latency_s,
        )

    def as_dict(self) -> dict[str, float | int]:
        """The totals as plain numbers, for the store and `--json` output."""
        return {
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "tokens_total": self.tokens_total,
            "latency_s": round(self.latency_s, 3),
        }


class ChatModel(Protocol):
    """What the runtime needs from a model backend.

    `schema` (a JSON schema) asks for constrained decoding where the backend can
    do it; callers still validate the text (see `agents.decision.parse_decision`).
    `timeout_s` bounds the whole call; on timeout or cancellation the backend stops
    generating instead of letting a worker run on. Callers that leave a `stream`
    early should close it (`contextlib.aclosing`) so generation stops at once; it is
    an async generator for that reason.
    """

    @property
    def name(self) -> str: ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[str, None]: ...

    async def aclose(self) -> None:
        """Release threads, sessions and memory; the model may not be used afterwards."""
        ...
