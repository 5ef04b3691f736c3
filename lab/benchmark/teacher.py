"""A teacher Observer for collecting trajectories: it decides from the analyzers' findings.

The embedded SmolLM2 writes almost no useful decision of its own, so a trajectory it
makes teaches nothing. The teacher makes the trajectories a good Observer would,
through the same runtime, prompts, Probe and store as any model, so every sample is
what an Observer is shown and what it should answer there:

1. **Probe what the analyzers point at.** The first observation is the analyzers'
   findings (``[severity] component: summary`` lines). When a line names the
   scenario's faulty service, the teacher describes that Deployment; when none does,
   it lists the namespace's Pods, then its events, to find it.
2. **Submit what the label confirms.** Once some observation has named the faulty
   service, the teacher submits the label (component, system level, fault type) in the
   task's answer form. When nothing has named it by the last step, it submits the
   analyzers' top component with Unknown labels, as a model with no more evidence
   would: that answer usually fails, and the trainer keeps successful trajectories only.

A no-fault scenario lists the Pods, then says "No". The teacher is built per
scenario (``lab.benchmark.runner.Benchmark.model_for``) because it needs the label;
it never sees the cluster except through the observations in its prompt.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from agents.decision import DECISION_SCHEMA, Decision
from agents.llm.base import Completion, Message
from lab.apps import APPS
from lab.scenarios.schema import Scenario
from store.labels import GroundTruth, TaskType

TEACHER_NAME = "teacher:analyzers"
_FIELDS = DECISION_SCHEMA["properties"]
SUMMARY_CHARS: int = _FIELDS["summary"]["maxLength"]
HYPOTHESES: int = _FIELDS["hypotheses"]["maxItems"]
HYPOTHESIS_CHARS: int = _FIELDS["hypotheses"]["items"]["maxLength"]
COMPONENT_CHARS: int = _FIELDS["root_cause"]["properties"]["component"]["maxLength"]
INSTRUCTION_CHARS: int = _FIELDS["next_action"]["properties"]["instruction"]["maxLength"]
"""The decode grammar's limits (``agents.decision.DECISION_SCHEMA``), so a sample is
something a model under that grammar can write."""
CONFIDENT = 90
"""Confidence when the analyzers named the faulty service."""
PROBED = 75
"""Confidence when only a probe named it."""
UNSURE = 30

_STEP = re.compile(r"^Step (\d+) of (\d+)\.$", re.MULTILINE)
_OBSERVATION = re.compile(r"<observation>\n(.*?)\n</observation>", re.DOTALL)
_FINDING = re.compile(r"^\[(\w+)\] ([a-z0-9][a-z0-9.-]*): (.*)$", re.MULTILINE)
_OWNED = re.compile(r"(?:-[a-z0-9]{5,10}){0,2}")
"""What follows a name in its ReplicaSets' and Pods' names: a template hash, a Pod suffix."""
_UNSAFE = re.compile(r'["\\]|[^ -~]')
"""What the decode grammar cannot write: quotes, backslashes, anything not printable ASCII."""


class AnalyzerTeacher:
    """A ``ChatModel`` that plays a good Observer on one scenario, from its findings and label.

    >>> teacher = AnalyzerTeacher.for_scenario(scenario)
    >>> async for event in investigate(ctx, engine=engine, cluster=access, model=teacher): ...
    """

    def __init__(self, *, task_type: TaskType, truth: GroundTruth, namespace: str) -> None:
        self._task = task_type
        self._truth = truth
        self._namespace = namespace
        self._findings: list[tuple[str, str]] = []
        """(component, summary) of the analyzers' lines, strongest first."""
        self._seen: list[str] = []
        self._probed: list[str] = []
        self._named_by: str | None = None

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> AnalyzerTeacher:
        return cls(
            task_type=scenario.task_type,
            truth=scenario.ground_truth,
            namespace=APPS[scenario.app].namespace,
        )

    @property
    def name(self) -> str:
        return TEACHER_NAME

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion:
        started = time.monotonic()
        text = json.dumps(self.decide(messages).model_dump(mode="json"), ensure_ascii=True)
        return Completion(
            text=text,
            tokens_in=sum(len(m["content"]) for m in messages) // 4,
            tokens_out=len(text) // 4,
            latency_s=time.monotonic() - started,
            model=TEACHER_NAME,
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
        completion = await self.complete(messages, schema=schema, max_tokens=max_tokens)
        yield completion.text

    async def aclose(self) -> None:
        return None

    # -- the policy ---------------------------------------------------------------------

    def decide(self, messages: Sequence[Message]) -> Decision:
        """The next decision for the Observer prompt ``messages`` (the last is the user's)."""
        user = messages[-1]["content"] if messages else ""
        step, max_steps = _step(user)
        observation = _observation(user)
        if step == 1 and not self._findings:
            self._findings = _findings(observation)
        self._seen.append(observation)
        last = step >= max_steps
        if not self._truth.detection:
            return self._healthy(last)
        target = self._named()
        if target is not None and self._probed:
            return self._submit(target)
        if target is not None and not last:
            return self._probe(f"kubectl describe deploy/{target} -n {self._namespace}", target)
        if not last and len(self._probed) < 2:
            command = "get pods" if not self._probed else "get events"
            return self._probe(f"kubectl {command} -n {self._namespace}", None)
        if target is not None:
            return self._submit(target)
        return self._guess()

    def _named(self) -> str | None:
        """The first faulty service an observation names: an analyzer line, else any text."""
        truth = [c.lower() for c in self._truth.components]
        for component, _ in self._findings:
            if component in truth:
                self._named_by = self._named_by or "analyzers"
                return component
        for text in self._seen:
            for component in truth:
                if _mentions(text, component):
                    self._named_by = self._named_by or "probe"
                    return component
        return None

    def _probe(self, command: str, target: str | None) -> Decision:
        self._probed.append(command)
        if target is not None:
            summary = f"{target}: {self._finding(target)}" if self._finding(target) else target
            hypotheses = [_clip(f"{target} is at fault", HYPOTHESIS_CHARS)]
            cause = self._cause(target, labelled=False)
            confidence = UNSURE + 20
        else:
            top = self._findings[0] if self._findings else None
            summary = f"{top[0]}: {top[1]}" if top else "No analyzer names a faulty service yet"
            hypotheses = []
            cause = {"component": "Unknown", "system_level": "Unknown", "fault_type": "Unknown"}
            confidence = UNSURE
        return _decision(
            summary=summary,
            phase="triage" if len(self._probed) == 1 else "diagnosis",
            hypotheses=hypotheses,
            root_cause=cause,
            confidence=confidence,
            kind="probe",
            instruction=command,
        )

    def _submit(self, target: str) -> Decision:
        cause = self._cause(target, labelled=True)
        level, fault = cause["system_level"], cause["fault_type"]
        answer = {
            "detection": "Yes",
            "localization": target,
            "analysis": f"{level} / {fault}",
            "mitigation": f"{target}: {level} / {fault}",
        }[self._task]
        seen = self._finding(target)
        return _decision(
            summary=f"{target}: {seen}" if seen else f"{target} shows the fault",
            phase="mitigation" if self._task == "mitigation" else "diagnosis",
            hypotheses=[_clip(f"{target}: {fault}", HYPOTHESIS_CHARS)],
            root_cause=cause,
            confidence=CONFIDENT if self._named_by == "analyzers" else PROBED,
            kind="submit",
            instruction=answer,
        )

    def _guess(self) -> Decision:
        top = self._findings[0][0] if self._findings else "Unknown"
        answer = {
            "detection": "Yes" if self._findings else "No",
            "localization": top,
            "analysis": "Unknown / Unknown",
            "mitigation": top,
        }[self._task]
        return _decision(
            summary="No observation names the faulty service",
            phase="diagnosis",
            hypotheses=[],
            root_cause={"component": top, "system_level": "Unknown", "fault_type": "Unknown"},
            confidence=UNSURE,
            kind="submit",
            instruction=answer,
        )

    def _healthy(self, last: bool) -> Decision:
        if not self._probed and not last:
            return self._probe(f"kubectl get pods -n {self._namespace}", None)
        return _decision(
            summary="No fault: the services run and nothing alarming persists",
            phase="verification",
            hypotheses=[],
            root_cause={"component": "none", "system_level": "Unknown", "fault_type": "Unknown"},
            confidence=PROBED,
            kind="submit",
            instruction="No",
        )

    def _cause(self, target: str, *, labelled: bool) -> dict[str, str]:
        truth = self._truth
        return {
            "component": target,
            "system_level": (truth.system_level or "Unknown") if labelled else "Unknown",
            "fault_type": (truth.fault_type or "Unknown") if labelled else "Unknown",
        }

    def _finding(self, component: str) -> str:
        return next((summary for name, summary in self._findings if name == component), "")


def _decision(
    *,
    summary: str,
    phase: str,
    hypotheses: list[str],
    root_cause: dict[str, str],
    confidence: int,
    kind: str,
    instruction: str,
) -> Decision:
    return Decision.model_validate(
        {
            "summary": _clip(summary, SUMMARY_CHARS),
            "phase": phase,
            "hypotheses": [_clip(h, HYPOTHESIS_CHARS) for h in hypotheses][:HYPOTHESES],
            "root_cause": {k: _clip(v, COMPONENT_CHARS) for k, v in root_cause.items()},
            "confidence": confidence,
            "next_action": {"kind": kind, "instruction": _clip(instruction, INSTRUCTION_CHARS)},
        }
    )


def _clip(text: str, limit: int) -> str:
    clean = " ".join(_UNSAFE.sub(" ", text).split())
    return clean if len(clean) <= limit else clean[: limit - 3].rstrip() + "..."


def _mentions(text: str, component: str) -> bool:
    """Whether ``text`` names ``component``: alone or as its ReplicaSet's or Pod's name
    (``geo-7c9d5b6f4-x2x9q``), never as part of a longer name (``geo`` in ``mongodb-geo``)."""
    pattern = rf"(?<![a-z0-9-]){re.escape(component)}((?:-[a-z0-9]+)*)"
    return any(_OWNED.fullmatch(m.group(1)) for m in re.finditer(pattern, text))


def _step(user: str) -> tuple[int, int]:
    found = _STEP.search(user)
    if found is None:
        return 1, 1
    return int(found.group(1)), int(found.group(2))


def _observation(user: str) -> str:
    blocks = _OBSERVATION.findall(user)
    return blocks[-1] if blocks else ""


def _findings(observation: str) -> list[tuple[str, str]]:
    return [(m.group(2).lower(), m.group(3).strip()) for m in _FINDING.finditer(observation)]
