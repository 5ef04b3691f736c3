"""From many findings to one answer: detection, the faulty component, its fault type, a fix.

Findings overlap (a broken database shows up in its own logs, its clients'
error rates and their traces) and differ in how directly they point at a
cause. Each component's score is its best finding's score plus a small bonus
per *other* analyzer that agrees, so independent evidence counts but many weak
symptoms never outweigh one direct cause. Only warning and critical findings
raise an alarm; informational ones (one past restart, a healthy rollout) can
still localise when nothing else does; findings whose symptom has stopped
(``agents.analyzers.recency``) never do: the root cause is what fails now.

A question usually names its application ("the hotel reservation app is
slow"); ``focus`` carries those namespaces (``agents.analyzers.focus``). With a
focus, the root cause and the detection answer come from the focus namespaces
alone: a broken app elsewhere stays in ``findings`` (reported "also seen"),
and a question about a healthy app is answered "no fault" even while another
app is broken. ``Diagnosis.answers`` speaks AIOpsLab's four task types.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.analyzers.finding import FaultType, Finding, SystemLevel
from agents.analyzers.recency import is_stopped
from agents.executor.actions import ActionSpec, action_to_json

AGREEMENT_BONUS = 0.05
MAX_BONUS = 0.15
SAME_SCORE = 0.01


class Diagnosis(BaseModel):
    """The analyzers' single best root-cause guess."""

    model_config = ConfigDict(frozen=True)

    detected: bool
    namespace: str | None = None
    component: str | None = None
    components: list[str] = Field(default_factory=list)
    confidence: int = Field(ge=0, le=100)
    system_level: SystemLevel | None = None
    fault_type: FaultType | None = None
    mitigation: ActionSpec | None = None
    summary: str = ""
    scores: list[tuple[str, float]] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)

    def answers(self) -> dict[str, Any]:
        """AIOpsLab's submissions: detection, localization, analysis and mitigation."""
        return {
            "detection": "Yes" if self.detected else "No",
            "localization": list(self.components),
            "analysis": {"system_level": self.system_level, "fault_type": self.fault_type},
            "mitigation": action_to_json(self.mitigation) if self.mitigation else None,
        }

    def text(self) -> str:
        if not self.detected and self.component is None:
            return f"No fault detected (confidence {self.confidence}%)."
        head = "Fault detected" if self.detected else "No alarming finding; weak lead"
        labels = f"{self.system_level} / {self.fault_type}" if self.fault_type else "unknown type"
        lines = [
            f"{head}: {', '.join(self.components)} ({labels}), confidence {self.confidence}%.",
            self.summary,
        ]
        if self.mitigation is not None:
            lines.append(f"Suggested fix: {self.mitigation.kubectl()}")
        return "\n".join(line for line in lines if line)


def component_scores(findings: Sequence[Finding]) -> list[tuple[tuple[str, str], float]]:
    """((namespace, component), score), best first."""
    grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        grouped[(finding.namespace, finding.component)].append(finding)
    scored = []
    for key, group in grouped.items():
        best = max(group, key=lambda f: f.score)
        others = {f.analyzer for f in group} - {best.analyzer}
        scored.append((key, min(1.0, best.score + min(MAX_BONUS, AGREEMENT_BONUS * len(others)))))
    return sorted(scored, key=lambda item: (-item[1], item[0]))


def diagnose(findings: Sequence[Finding], *, focus: Sequence[str] | None = None) -> Diagnosis:
    """Rank findings into one diagnosis (no findings at all: nothing detected).

    ``focus``: the namespaces the question is about; when given, only their findings can be
    the root cause or raise the alarm (the others stay in ``findings``, listed after).
    """
    focused = set(focus or ())
    considered = [f for f in findings if f.namespace in focused] if focused else list(findings)
    alarming = [f for f in considered if f.alarming]
    pool = alarming or [f for f in considered if not is_stopped(f)]
    ordered = sorted(
        findings,
        key=lambda f: (bool(focused) and f.namespace not in focused, not f.alarming, -f.score),
    )
    if not pool:
        where = focus[0] if focus else None  # so other namespaces read as "also seen"
        summary = "every analyzer came back clean"
        if considered:
            summary = "only symptoms that have stopped: nothing fails now"
        elif len(considered) < len(findings):
            summary = f"every analyzer came back clean for {', '.join(focus or ())}"
        return Diagnosis(
            detected=False,
            namespace=where,
            confidence=70 if considered else 85,
            summary=summary,
            findings=ordered,
        )
    scores = component_scores(pool)
    (namespace, top), top_score = scores[0]
    mine = sorted(
        (f for f in pool if f.component == top and f.namespace == namespace), key=lambda f: -f.score
    )
    labelled = next((f for f in mine if f.suggested_fault), None)
    fix = next((f.remediation for f in mine if f.remediation is not None), None)
    second = scores[1][1] if len(scores) > 1 else 0.0
    return Diagnosis(
        detected=bool(alarming),
        namespace=namespace,
        component=top,
        components=_peers(pool, scores, mine[0]),
        confidence=_confidence(top_score, second, bool(alarming)),
        system_level=labelled.suggested_fault[0] if labelled and labelled.suggested_fault else None,
        fault_type=labelled.suggested_fault[1] if labelled and labelled.suggested_fault else None,
        mitigation=fix,
        summary=mine[0].summary,
        scores=[(f"{ns}/{c}", round(s, 3)) for (ns, c), s in scores[:8]],
        findings=ordered,
    )


def _peers(
    pool: Sequence[Finding], scores: list[tuple[tuple[str, str], float]], best: Finding
) -> list[str]:
    """The top component plus those with the same kind of finding (six claims of a redeploy)."""
    top_score = scores[0][1]
    names = [scores[0][0][1]]
    for (namespace, component), score in scores[1:]:
        if abs(score - top_score) > SAME_SCORE:
            break
        same = any(
            f.component == component
            and f.namespace == namespace
            and f.analyzer == best.analyzer
            and f.suggested_fault == best.suggested_fault
            for f in pool
        )
        if same:
            names.append(component)
    return names


def _confidence(top: float, second: float, alarming: bool) -> int:
    margin = max(top - second, 0.0)
    value = 100 * top * (0.6 + 0.4 * min(1.0, margin / 0.3))
    if not alarming:
        value *= 0.5
    return max(0, min(100, round(value)))
