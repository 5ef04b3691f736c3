"""The AOI loop: observe, reason, act — as an async stream of events.

``investigate`` runs the deterministic analyzers first (triage, and the answer
when no model is configured), then lets the Observer decide step by step:
probe (read-only tools), executor (a proposal, never an execution) or submit.
The final diagnosis merges the Observer's answer with the analyzers' ranking,
because a small local model is weak on its own and evidence must carry it.
Every step is stored as it happens; the stream ends with ``Finished``.

A follow-up (``IncidentContext.incident_id``) continues that incident: its
steps follow the stored ones and the Observer's prompt carries the questions
asked before and the last diagnosis.

Twenty investigations share one event loop in the Slack bot, so nothing here
blocks it: store writes and reads, Kubernetes requests (a blocking client) and
the Compressor's work on large tool output run in threads; Prometheus, Jaeger
and HTTP models use aiohttp; the models' own clients never block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from sqlalchemy.engine import Engine

from agents.analyzers.finding import Finding
from agents.analyzers.focus import focus_namespaces
from agents.analyzers.rank import Diagnosis, diagnose
from agents.analyzers.runner import AnalysisReport, analyze
from agents.compressor import compress
from agents.decision import (
    DECISION_MAX_TOKENS,
    DECISION_SCHEMA,
    SUBMIT_SCHEMA,
    Decision,
    DecisionError,
    parse_decision,
    repair_prompt,
)
from agents.events import (
    AnyEvent,
    DiagnosisEvent,
    ErrorEvent,
    FindingEvent,
    Finished,
    Hypothesis,
    ObserverAnswer,
    Plan,
    ProbeCall,
    ProbeResult,
    ProposalEvent,
    Started,
)
from agents.executor import DEFAULT_RULES, ActionRules, ActionSpec, parse_action, propose
from agents.llm import ChatModel, ModelError, Usage
from agents.probe import Probe
from agents.prompts import observer_messages, stored_prompt
from agents.redact import redact
from agents.tools.result import ToolResult
from agents.trajectory import IncidentContext, Trajectory, retrieve_guidance
from store.models import IncidentStatus, StepPhase

OBSERVATION_TOKENS = 600
EVIDENCE_LINES = 5
RULED_OUT_LINES = 5
OTHER_NAMESPACE_LINES = 2
"""Of ``RULED_OUT_LINES``, how many are kept for trouble in other namespaces."""
LINE_CHARS = 200


@dataclass(frozen=True)
class ClusterAccess:
    """How the runtime reads a cluster: the observer identity and the telemetry APIs."""

    api: client.ApiClient
    prometheus_url: str | None = None
    jaeger_url: str | None = None
    namespaces: Sequence[str] | None = None


@dataclass(frozen=True)
class Limits:
    max_steps: int = 6
    probe_calls: int = 3
    proposal_ttl_s: int = 900
    rules: ActionRules = DEFAULT_RULES
    """What no proposal may do (protected namespaces, registries, replica bounds)."""
    window: str = "1m"
    """How far back the analyzers read metrics, traces and logs (a Prometheus duration)."""
    recent: str = "15s"
    """A symptom not seen this recently has stopped: context, not the incident."""


@dataclass
class _Run:
    """Mutable state of one investigation."""

    trajectory: Trajectory
    usage: Usage = field(default_factory=Usage)
    history: list[Decision] = field(default_factory=list)
    proposals: list[int] = field(default_factory=list)
    observation: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def incident_id(self) -> int:
        return self.trajectory.incident_id


async def investigate(
    ctx: IncidentContext,
    *,
    engine: Engine,
    cluster: ClusterAccess,
    model: ChatModel | None,
    limits: Limits = Limits(),
) -> AsyncGenerator[AnyEvent, None]:
    """Investigate ``ctx.question`` read-only; yields events until ``Finished``.

    >>> async for event in investigate(IncidentContext(question="checkout is slow"),
    ...                                engine=engine, cluster=access, model=None):
    ...     print(event.kind)

    With ``ctx.incident_id`` set it is a follow-up of that incident; one that cannot
    continue raises ``UnknownIncident``, ``IncidentClosed`` or ``IncidentBusy``
    (``agents.trajectory``) from the first ``__anext__``, before anything runs.
    """
    run = _Run(Trajectory(engine))
    await _open(run.trajectory, ctx)
    yield Started(
        incident_id=run.incident_id,
        question=ctx.question,
        model=model.name if model else "analyzers",
        follow_up=run.trajectory.follow_up,
    )
    status = IncidentStatus.FAILED
    summary: dict[str, Any] | None = None
    try:
        triage = await _triage(
            run, cluster, window=limits.window, recent=limits.recent, question=ctx.question
        )
        for event in triage.events:
            yield event
        decision: Decision | None = None
        if model is not None:
            async for item in _observe_loop(run, ctx, engine, cluster, model, limits):
                if isinstance(item, Decision):
                    decision = item
                else:
                    yield item
        final = _merge(decision, triage.diagnosis, run.incident_id)
        summary = final.model_dump(mode="json")
        yield final
        if not run.proposals and triage.diagnosis.mitigation is not None:
            proposed = await _propose(
                run, engine, cluster, triage.diagnosis.mitigation, ctx, limits
            )
            if proposed is not None:
                yield proposed
        status = IncidentStatus.DIAGNOSED
    except asyncio.CancelledError:
        # Cancelled (the bot shutting down): INTERRUPTED, which a follow-up continues. A
        # consumer that stops reading (GeneratorExit) leaves it FAILED.
        status = IncidentStatus.INTERRUPTED
        raise
    finally:
        await run.trajectory.close(status, summary)
    yield Finished(
        incident_id=run.incident_id,
        status=status.value,
        steps=run.trajectory.steps,
        tokens_in=run.usage.tokens_in,
        tokens_out=run.usage.tokens_out,
        seconds=round(time.monotonic() - run.started, 2),
        result={"diagnosis": summary, "proposals": run.proposals},
    )


async def _open(trajectory: Trajectory, ctx: IncidentContext) -> None:
    """``trajectory.open``, and a cancellation meanwhile never leaves a row INVESTIGATING.

    The store write runs in a thread that a cancelled caller cannot stop: it may
    still open (or reopen) the incident, which nobody would then close, and a
    reopened incident would refuse every later follow-up as busy. So the write is
    waited for, and what it opened is closed FAILED before the cancellation goes on.
    """
    opening = asyncio.ensure_future(trajectory.open(ctx))
    try:
        await asyncio.shield(opening)
    except asyncio.CancelledError:
        # A refused follow-up opened nothing; a store that fails now cannot be helped here.
        with contextlib.suppress(Exception):
            await opening
            await trajectory.close(IncidentStatus.FAILED, None)
        raise


@dataclass
class _Triage:
    diagnosis: Diagnosis
    events: list[AnyEvent]


async def _triage(
    run: _Run, cluster: ClusterAccess, *, window: str, recent: str = "15s", question: str = ""
) -> _Triage:
    """The analyzers over the whole cluster: the first observation, and the fallback answer.

    The root cause comes from the namespaces the question names, when it names any; trouble
    elsewhere is kept as "also seen"."""
    started = time.monotonic()
    try:
        report = await analyze(
            cluster.api,
            namespaces=cluster.namespaces,
            prometheus_url=cluster.prometheus_url,
            jaeger_url=cluster.jaeger_url,
            window=window,
            recent=recent,
        )
    except Exception as exc:  # the API itself cannot be read: say so, answer "no data"
        report = AnalysisReport(
            errors=[
                f"the cluster cannot be read ({_reason(exc)[:300]}); check that it is "
                "reachable and that the observer's kubeconfig is valid"
            ]
        )
    diagnosis = diagnose(report.findings, focus=focus_namespaces(question, report.namespaces))
    lines = [f"[{f.severity}] {f.component}: {f.summary}" for f in diagnosis.findings[:8]]
    lines += [f"analyzer error: {e}" for e in report.errors]
    observation = await asyncio.to_thread(
        compress,
        [("analyzers", "\n".join(lines) or "no problems found")],
        budget_tokens=OBSERVATION_TOKENS,
    )
    run.observation = observation.text
    await run.trajectory.step(
        StepPhase.OBSERVE,
        tool_calls=[{"tool": "analyzers", "findings": len(report.findings)}],
        observation=observation.text,
        latency_ms=int((time.monotonic() - started) * 1000),
    )
    events: list[AnyEvent] = [
        FindingEvent(
            incident_id=run.incident_id,
            analyzer=f.analyzer,
            severity=str(f.severity),
            component=f.component,
            summary=f.summary,
            evidence=f.evidence[:3],
        )
        for f in diagnosis.findings[:5]
    ]
    events += [ErrorEvent(incident_id=run.incident_id, message=e) for e in report.errors]
    return _Triage(diagnosis, events)


async def _observe_loop(
    run: _Run,
    ctx: IncidentContext,
    engine: Engine,
    cluster: ClusterAccess,
    model: ChatModel,
    limits: Limits,
) -> AsyncIterator[AnyEvent | Decision]:
    probe = Probe(
        cluster.api,
        prometheus_url=cluster.prometheus_url,
        jaeger_url=cluster.jaeger_url,
        max_calls=limits.probe_calls,
    )
    # A store read: off the event loop, which every concurrent investigation shares.
    guidance = await asyncio.to_thread(
        retrieve_guidance, engine, f"{ctx.question}\n{run.observation}"
    )
    earlier = run.trajectory.earlier
    for step in range(1, limits.max_steps + 1):
        last = step == limits.max_steps
        messages = observer_messages(
            question=ctx.question,
            history=run.history,
            observation=run.observation,
            guidance=guidance,
            step=step,
            max_steps=limits.max_steps,
            earlier_questions=earlier.questions if earlier else (),
            earlier_diagnosis=earlier.diagnosis if earlier else None,
        )
        # The exact prompt goes into the step (messages, version, guidance shown), so a
        # training sample can be rebuilt from the store byte for byte.
        prompt = stored_prompt(messages, guidance=guidance)
        started = time.monotonic()
        try:
            decision = await _decide(run, model, messages, prompt, last=last)
        except (ModelError, DecisionError) as exc:
            message = redact(f"the model failed ({exc}); answering from the analyzers")
            # The failed decision is a step too, so the stored trajectory shows where it ended.
            await run.trajectory.step(
                StepPhase.REASON,
                **prompt,
                observation=message,
                latency_ms=int((time.monotonic() - started) * 1000),
            )
            yield ErrorEvent(incident_id=run.incident_id, step=step, message=message)
            return
        run.history.append(decision)
        yield Plan(
            incident_id=run.incident_id,
            step=step,
            phase=decision.phase,
            summary=decision.summary,
            next_action=decision.next_action.kind,
            instruction=decision.next_action.instruction,
        )
        yield Hypothesis(
            incident_id=run.incident_id,
            step=step,
            hypotheses=decision.hypotheses,
            confidence=decision.confidence,
        )
        yield decision
        kind = decision.next_action.kind
        if kind == "submit":
            return
        if kind == "probe":
            async for event in _probe(run, probe, decision.next_action.instruction, step):
                yield event
            continue
        async for event in _act(run, engine, cluster, decision, ctx, limits, step):
            yield event
        return


async def _decide(
    run: _Run, model: ChatModel, messages: list[Any], prompt: dict[str, Any], *, last: bool
) -> Decision:
    """One Observer decision, stored with ``prompt`` (``stored_prompt(messages, ...)``).

    A repair request is built from the model's rejected answer; the step keeps the
    Observer's prompt, which is what a training sample starts from."""
    schema = SUBMIT_SCHEMA if last else DECISION_SCHEMA
    started = time.monotonic()
    completion = await model.complete(messages, schema=schema, max_tokens=DECISION_MAX_TOKENS)
    run.usage.add(completion)
    try:
        decision = parse_decision(completion.text)
    except DecisionError as exc:
        reason = exc.reason
        if completion.finish_reason == "length":
            reason += f" (the answer was cut off at max_tokens={DECISION_MAX_TOKENS})"
        # One repair attempt, with twice the room in case the answer was cut off.
        completion = await model.complete(
            repair_prompt(completion.text, error=reason),
            schema=schema,
            max_tokens=2 * DECISION_MAX_TOKENS,
        )
        run.usage.add(completion)
        decision = parse_decision(completion.text)
    await run.trajectory.step(
        StepPhase.REASON,
        **prompt,
        decision=decision.model_dump(mode="json"),
        tokens_in=completion.tokens_in,
        tokens_out=completion.tokens_out,
        latency_ms=int((time.monotonic() - started) * 1000),
    )
    return decision


async def _probe(run: _Run, probe: Probe, instruction: str, step: int) -> AsyncIterator[AnyEvent]:
    started = time.monotonic()
    try:
        results = await probe.run(instruction)
    except Exception as exc:  # a tool's failure is the model's next observation
        results = [ToolResult.failure(instruction[:200], f"the probe failed: {_reason(exc)}")]
    sections = []
    for result in results:
        yield ProbeCall(incident_id=run.incident_id, step=step, invocation=result.invocation)
        text = result.data if result.data else (result.error or "")
        sections.append((result.invocation, text))
        first = redact(_first_line(text) or "(no output)")
        yield ProbeResult(
            incident_id=run.incident_id,
            step=step,
            invocation=result.invocation,
            status=str(result.status),
            summary=first[:200],
        )
    # Tool output can be megabytes: the Compressor (which redacts it all) runs in a thread.
    observation = await asyncio.to_thread(compress, sections, budget_tokens=OBSERVATION_TOKENS)
    run.observation = observation.text
    await run.trajectory.step(
        StepPhase.OBSERVE,
        tool_calls=[{"invocation": r.invocation, "status": str(r.status)} for r in results],
        observation=observation.text,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


async def _act(
    run: _Run,
    engine: Engine,
    cluster: ClusterAccess,
    decision: Decision,
    ctx: IncidentContext,
    limits: Limits,
    step: int,
) -> AsyncIterator[AnyEvent]:
    try:
        spec = parse_action(decision.next_action.instruction, rules=limits.rules)
    except Exception as exc:  # whatever the model wrote, it is an observation, never a crash
        reason = redact(_reason(exc))
        run.observation = f"the executor could not read that action: {reason}"
        yield ErrorEvent(incident_id=run.incident_id, step=step, message=reason)
        return
    event = await _propose(run, engine, cluster, spec, ctx, limits)
    if event is not None:
        yield event


async def _propose(
    run: _Run,
    engine: Engine,
    cluster: ClusterAccess,
    spec: ActionSpec,
    ctx: IncidentContext,
    limits: Limits,
) -> ProposalEvent | ErrorEvent | None:
    try:
        proposal = await propose(
            engine,
            run.incident_id,
            spec,
            requester=ctx.requester,
            ttl_s=limits.proposal_ttl_s,
            api=cluster.api,
            rules=limits.rules,
        )
    except Exception as exc:  # refused, or the target could not be read: never a crash
        return ErrorEvent(incident_id=run.incident_id, message=f"no proposal: {_reason(exc)}")
    assert proposal.id is not None
    run.proposals.append(proposal.id)
    await run.trajectory.step(
        StepPhase.ACT, tool_calls=[{"proposal": proposal.id, "action": proposal.action}]
    )
    return ProposalEvent(
        incident_id=run.incident_id,
        proposal_id=proposal.id,
        action=proposal.action,
        target=f"{proposal.target_kind}/{proposal.target_namespace}/{proposal.target_name}",
        expected_effect=proposal.expected_effect,
        expires_at=proposal.expires_at.isoformat(),
        command=spec.describe(),
    )


def _first_line(text: str) -> str:
    """The first non-blank line, read from the head only (tool output can be megabytes)."""
    lines = text[:4096].strip().splitlines()
    return lines[0] if lines else ""


def _reason(exc: BaseException) -> str:
    """An exception as one line a model and a person can read."""
    text = " ".join(str(exc).split()) or "no message"
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"


def _merge(decision: Decision | None, analysis: Diagnosis, incident: int) -> DiagnosisEvent:
    """The Observer's answer, checked against the analyzers' evidence (its own kept beside)."""
    own = _own(decision)
    if decision is None or (analysis.detected and decision.confidence <= analysis.confidence):
        return DiagnosisEvent(
            incident_id=incident,
            detected=analysis.detected,
            components=analysis.components,
            namespace=analysis.namespace,
            system_level=analysis.system_level,
            fault_type=analysis.fault_type,
            confidence=analysis.confidence,
            summary=analysis.summary,
            source="analyzers",
            evidence=_evidence(analysis, analysis.components),
            ruled_out=_ruled_out(analysis, analysis.components),
            observer=own,
        )
    rc = decision.root_cause
    agrees = rc.component in analysis.components
    components = analysis.components if agrees else [rc.component, *analysis.components][:3]
    return DiagnosisEvent(
        incident_id=incident,
        detected=decision.root_cause.component.lower() not in ("", "none"),
        components=components,
        namespace=analysis.namespace,
        system_level=rc.system_level if rc.system_level != "Unknown" else analysis.system_level,
        fault_type=rc.fault_type if rc.fault_type != "Unknown" else analysis.fault_type,
        confidence=decision.confidence,
        summary=decision.summary,
        source="model+analyzers" if agrees else "model",
        evidence=_evidence(analysis, components),
        ruled_out=_ruled_out(analysis, components),
        observer=own,
    )


def _own(decision: Decision | None) -> ObserverAnswer | None:
    if decision is None:
        return None
    rc = decision.root_cause
    return ObserverAnswer(
        kind=decision.next_action.kind,
        instruction=decision.next_action.instruction,
        component=rc.component,
        system_level=rc.system_level,
        fault_type=rc.fault_type,
        confidence=decision.confidence,
    )


def _line(text: str, limit: int = LINE_CHARS) -> str:
    """One line of at most ``limit`` characters: redacted first (a clipped secret could escape
    the detectors), whitespace and newlines folded, long text clipped."""
    folded = " ".join(redact(str(text)).split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


def _named(finding: Finding, analysis: Diagnosis, components: Sequence[str]) -> bool:
    """The finding is about a component the diagnosis names (in the diagnosis' namespace)."""
    in_scope = analysis.namespace is None or finding.namespace == analysis.namespace
    return in_scope and finding.component in components


def _evidence(analysis: Diagnosis, components: Sequence[str]) -> list[str]:
    """The strongest findings' evidence lines for ``components`` (their summary if none)."""
    lines: list[str] = []
    for finding in analysis.findings:  # alarming first, strongest first
        if not _named(finding, analysis, components):
            continue
        for raw in finding.evidence or [finding.summary]:
            line = _line(raw)
            if line and line not in lines:
                lines.append(line)
    return lines[:EVIDENCE_LINES]


def _ruled_out(analysis: Diagnosis, components: Sequence[str]) -> list[str]:
    """What else the analyzers saw: components ranked below the diagnosis (their best finding),
    and alarming findings in other namespaces ("also seen"), each once."""
    below: list[str] = []
    elsewhere: list[str] = []
    seen: set[tuple[str, str]] = set()
    for finding in analysis.findings:  # alarming first, strongest first: each key's best
        key = (finding.namespace, finding.component)
        if key in seen or _named(finding, analysis, components):
            continue
        seen.add(key)
        summary = finding.summary
        if finding.component not in summary:
            summary = f"{finding.component}: {summary}"
        if analysis.namespace is None or finding.namespace == analysis.namespace:
            suffix = f" ({finding.severity}, ranked below)"
            line = f"{_line(summary, LINE_CHARS - len(suffix))}{suffix}".strip()
            if line not in below:
                below.append(line)
        elif finding.alarming:
            line = _line(f"also seen in {finding.namespace}: {summary}")
            if line not in elsewhere:
                elsewhere.append(line)
    kept_elsewhere = elsewhere[: min(OTHER_NAMESPACE_LINES, RULED_OUT_LINES)]
    kept_below = below[: RULED_OUT_LINES - len(kept_elsewhere)]
    kept_elsewhere = elsewhere[: RULED_OUT_LINES - len(kept_below)]
    return kept_below + kept_elsewhere
