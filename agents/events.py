"""The investigation's event stream: the one interface every front end consumes.

The Slack bot, the console and the benchmark all read the same typed events
from ``investigate(...)``; none of them reaches into the runtime. Events carry
already-redacted text (every event's strings pass through ``redact_json`` when it
is built), so a front end can show them as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from agents.redact import redact_json


class Event(BaseModel):
    kind: str
    incident_id: int
    step: int = 0

    @model_validator(mode="before")
    @classmethod
    def _redacted(cls, data: Any) -> Any:
        # The one choke point for front ends: whatever built an event, the model, a
        # tool, a proposal, an error, its text is redacted before anyone can show it.
        return redact_json(data) if isinstance(data, dict) else data


class Started(Event):
    kind: Literal["started"] = "started"
    question: str
    model: str
    follow_up: bool = False
    """The question continues an earlier incident (the same Slack thread), with its history."""


class Plan(Event):
    kind: Literal["plan"] = "plan"
    phase: str
    summary: str
    next_action: str
    instruction: str


class ProbeCall(Event):
    kind: Literal["probe_call"] = "probe_call"
    invocation: str


class ProbeResult(Event):
    kind: Literal["probe_result"] = "probe_result"
    invocation: str
    status: str
    summary: str


class FindingEvent(Event):
    kind: Literal["finding"] = "finding"
    analyzer: str
    severity: str
    component: str
    summary: str
    evidence: list[str] = Field(default_factory=list)


class Hypothesis(Event):
    kind: Literal["hypothesis"] = "hypothesis"
    hypotheses: list[str]
    confidence: int


class ObserverAnswer(BaseModel):
    """The Observer's own last decision, before any merge with the analyzers.

    The benchmark's ``--agent llm`` scores this, so what the model itself
    contributes stays visible next to the merged answer.
    """

    kind: str
    """The last decision's next_action kind: ``submit`` unless the run ended otherwise."""
    instruction: str
    component: str
    system_level: str
    fault_type: str
    confidence: int


class DiagnosisEvent(Event):
    kind: Literal["diagnosis"] = "diagnosis"
    detected: bool
    components: list[str]
    namespace: str | None = None
    system_level: str | None = None
    fault_type: str | None = None
    confidence: int
    summary: str
    source: Literal["model", "analyzers", "model+analyzers"]
    evidence: list[str] = Field(default_factory=list)
    """The lines that carry the diagnosis: the strongest findings' evidence for ``components``
    (at most 5, one line each)."""
    ruled_out: list[str] = Field(default_factory=list)
    """What the analyzers also saw but rank below, and trouble in other namespaces (at most 5)."""
    observer: ObserverAnswer | None = None
    """The Observer's own answer (None when no model ran or it gave no decision)."""


class ProposalEvent(Event):
    kind: Literal["proposal"] = "proposal"
    proposal_id: int
    action: str
    target: str
    expected_effect: str
    expires_at: str
    command: str


class ErrorEvent(Event):
    kind: Literal["error"] = "error"
    message: str


class Finished(Event):
    kind: Literal["finished"] = "finished"
    status: str
    steps: int
    tokens_in: int
    tokens_out: int
    seconds: float
    result: dict[str, Any] = Field(default_factory=dict)


AnyEvent = (
    Started
    | Plan
    | ProbeCall
    | ProbeResult
    | FindingEvent
    | Hypothesis
    | DiagnosisEvent
    | ProposalEvent
    | ErrorEvent
    | Finished
)
