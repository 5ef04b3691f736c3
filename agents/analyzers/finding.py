"""What an analyzer reports: one finding about one component, with its evidence.

Findings are the deterministic baseline's answer and the Observer's best
evidence, so they carry what both need: the faulty component (the service
name, which is what AIOpsLab grades), a one-line summary, the evidence lines
verbatim, a suggested (system level, fault type) in AIOpsLab's taxonomy, a
remediation the Executor can propose, and a score saying how directly the
finding points at a root cause rather than at a symptom.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from agents.executor.actions import ActionSpec
from store.labels import FaultType as FaultType
from store.labels import SystemLevel as SystemLevel

Fault = tuple[SystemLevel, FaultType]


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"
    """Worth knowing, not an incident on its own (one past restart, a healthy change)."""


class Finding(BaseModel):
    """One analyzer's conclusion about one component."""

    model_config = ConfigDict(frozen=True)

    analyzer: str
    severity: Severity
    namespace: str
    kind: str
    name: str
    component: str
    """The service (AIOpsLab's component) the finding blames."""
    summary: str
    evidence: list[str] = Field(default_factory=list)
    suggested_fault: Fault | None = None
    remediation: ActionSpec | None = None
    score: float = Field(default=0.5, ge=0.0, le=1.0)
    """How directly this points at the root cause (1: the cause itself, low: a symptom)."""
    stopped: bool = False
    """Seen over the long window but not the recent one: the past, never the root cause."""

    @property
    def alarming(self) -> bool:
        return self.severity is not Severity.INFO

    def text(self) -> str:
        """The finding as the Observer and Slack read it."""
        head = f"[{self.severity}] {self.analyzer}: {self.summary}"
        lines = [head, *(f"    {line}" for line in self.evidence[:6])]
        if self.suggested_fault:
            lines.append(f"    suggests: {self.suggested_fault[0]} / {self.suggested_fault[1]}")
        if self.remediation is not None:
            lines.append(f"    fix: {self.remediation.kubectl()}")
        return "\n".join(lines)
