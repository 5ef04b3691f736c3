"""The typed result every tool returns instead of raising.

A model cannot catch exceptions; it can read an observation. So each tool call
ends as one ``ToolResult``: SUCCESS with data, NO_DATA when the call worked but
found nothing (or repeated an earlier call), ERROR with a message an SRE can act
on, DENIED when a policy refused it before anything ran. ``invocation`` is the
call as written (``kubectl get pods -n x``), so the Compressor can keep
command → result order and the store can replay what was asked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.redact import redact

_TEXT_FIELDS = frozenset({"invocation", "data", "error"})


class ToolStatus(StrEnum):
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    NO_DATA = "NO_DATA"
    DENIED = "DENIED"


class ToolResult(BaseModel):
    """One tool call's outcome.

    Usage::

        result = ToolResult.success("kubectl get pods -n shop", table)
        if result.ok:
            print(result.data)
    """

    model_config = ConfigDict(frozen=True)

    status: ToolStatus
    invocation: str
    data: str = ""
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _redacted(cls, values: Any) -> Any:
        # Every text leaving a tool (its output, its error, the call as written) is
        # redacted here, before the Compressor, the model, the store or a front end.
        if not isinstance(values, dict):
            return values
        return {
            key: redact(value) if key in _TEXT_FIELDS and isinstance(value, str) else value
            for key, value in values.items()
        }

    @classmethod
    def success(cls, invocation: str, data: str, **meta: Any) -> ToolResult:
        return cls(status=ToolStatus.SUCCESS, invocation=invocation, data=data, meta=meta)

    @classmethod
    def no_data(cls, invocation: str, reason: str, **meta: Any) -> ToolResult:
        return cls(status=ToolStatus.NO_DATA, invocation=invocation, data=reason, meta=meta)

    @classmethod
    def failure(cls, invocation: str, error: str, **meta: Any) -> ToolResult:
        return cls(status=ToolStatus.ERROR, invocation=invocation, error=error, meta=meta)

    @classmethod
    def denied(cls, invocation: str, reason: str, **meta: Any) -> ToolResult:
        return cls(status=ToolStatus.DENIED, invocation=invocation, error=reason, meta=meta)

    @property
    def ok(self) -> bool:
        return self.status is ToolStatus.SUCCESS

    def render(self) -> str:
        """The result as the model reads it: the call, its status, then its text."""
        body = self.data if self.status in (ToolStatus.SUCCESS, ToolStatus.NO_DATA) else ""
        if self.error:
            body = f"{body}\n{self.error}".strip()
        return f"$ {self.invocation}\n[{self.status}]\n{body}".rstrip() + "\n"
