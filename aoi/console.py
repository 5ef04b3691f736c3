"""The terminal front end: live rendering of an investigation and approval prompts.

It consumes the same event stream as the Slack bot. Each proposal is shown with
the provenance of its values (restoration or new value, with the exact diff).
Approving here is the same atomic store transition a Slack click makes, under
the same approval policy (``aoi.approvals``: the operator approves as
``console:<os user>``), and execution goes through the executor identity.
``--yes`` approves restorations only, as an automatic approval the store itself
checks; a new value waits for the person at the terminal (or stays PENDING when
there is none). The executor's denylist, the expiry and the stale-target checks
hold either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from agents.events import (
    AnyEvent,
    DiagnosisEvent,
    ErrorEvent,
    FindingEvent,
    Finished,
    Hypothesis,
    Plan,
    ProbeCall,
    ProbeResult,
    ProposalEvent,
    Started,
)
from agents.executor import ActionRules, Provenance, execute
from agents.llm import ChatModel
from agents.runtime import Limits, investigate
from agents.trajectory import IncidentContext
from aoi.wiring import Wiring
from store import proposals as proposal_store
from store.db import session_scope
from store.errors import ApprovalRefused
from store.models import Proposal
from store.policy import ApprovalPolicy


@dataclass
class Outcome:
    """What the console reports at the end (the `--json` object)."""

    incident_id: int = 0
    diagnosis: DiagnosisEvent | None = None
    proposals: list[dict[str, Any]] = field(default_factory=list)
    finished: Finished | None = None
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = self.diagnosis
        f = self.finished
        return {
            "incident_id": self.incident_id,
            "detected": d.detected if d else False,
            "components": d.components if d else [],
            "namespace": d.namespace if d else None,
            "system_level": d.system_level if d else None,
            "fault_type": d.fault_type if d else None,
            "confidence": d.confidence if d else 0,
            "source": d.source if d else None,
            "proposals": self.proposals,
            "steps": f.steps if f else 0,
            "tokens": (f.tokens_in + f.tokens_out) if f else 0,
            "seconds": f.seconds if f else 0.0,
            "errors": self.errors,
        }


Asker = Callable[[ProposalEvent, Provenance], bool | None]
"""A person's decision on one proposal: True approves, False rejects, None = nobody to ask."""


@dataclass(frozen=True)
class Approvals:
    """How the console decides: who approves, under which policy and rules, and ``--yes``."""

    ask: Asker
    approver: str
    policy: ApprovalPolicy
    rules: ActionRules
    automatic: bool = False


def render(console: Console, event: AnyEvent) -> None:
    if isinstance(event, Started):
        console.print(
            f"[bold]incident #{event.incident_id}[/] {event.question} "
            f"[dim](model: {event.model})[/]"
        )
    elif isinstance(event, FindingEvent):
        console.print(f"  [yellow]finding[/] {event.component}: {event.summary}")
    elif isinstance(event, Plan):
        console.print(
            f"  [cyan]step {event.step} {event.phase}[/] {event.summary} → "
            f"{event.next_action}: {event.instruction}"
        )
    elif isinstance(event, Hypothesis) and event.hypotheses:
        console.print(f"    hypotheses ({event.confidence}%): {'; '.join(event.hypotheses)}")
    elif isinstance(event, ProbeCall):
        console.print(f"    [dim]$ {event.invocation}[/]")
    elif isinstance(event, ProbeResult):
        console.print(f"    [dim]{event.status}: {event.summary}[/]")
    elif isinstance(event, DiagnosisEvent):
        console.print(
            Panel(
                f"{event.summary}\ncomponents: {', '.join(event.components) or '-'}  "
                f"level: {event.system_level}  type: {event.fault_type}  "
                f"confidence: {event.confidence}%  (from {event.source})",
                title="diagnosis" if event.detected else "no fault found",
            )
        )
    elif isinstance(event, ProposalEvent):
        console.print(
            Panel(
                f"{event.command}\nexpected: {event.expected_effect}\nexpires: {event.expires_at}",
                title=f"proposal #{event.proposal_id}: {event.action}",
            )
        )
    elif isinstance(event, ErrorEvent):
        console.print(f"  [red]error[/] {event.message}")
    elif isinstance(event, Finished):
        console.print(
            f"[dim]done: {event.steps} steps, {event.tokens_in + event.tokens_out} "
            f"tokens, {event.seconds}s[/]"
        )


async def run_console(
    *,
    ctx: IncidentContext,
    wiring: Wiring,
    model: ChatModel | None,
    limits: Limits,
    approvals: Approvals,
    console: Console,
) -> Outcome:
    """Investigate, render each event, and decide on each proposal under ``approvals``."""
    outcome = Outcome()
    async for event in investigate(
        ctx, engine=wiring.engine, cluster=wiring.cluster, model=model, limits=limits
    ):
        render(console, event)
        outcome.incident_id = event.incident_id
        if isinstance(event, DiagnosisEvent):
            outcome.diagnosis = event
        elif isinstance(event, ErrorEvent):
            outcome.errors.append(event.message)
        elif isinstance(event, Finished):
            outcome.finished = event
        elif isinstance(event, ProposalEvent):
            outcome.proposals.append(await decide(event, wiring, approvals, console))
    return outcome


def _provenance(wiring: Wiring, proposal_id: int) -> Provenance:
    with session_scope(wiring.engine) as session:
        row = session.get(Proposal, proposal_id)
        return Provenance.from_json(row.provenance if row is not None else None)


def render_values(console: Console, provenance: Provenance) -> None:
    """Each value the proposal sets: restoration or new, and the exact (redacted) diff."""
    for line in provenance.diff():
        style = (
            "green" if line.startswith("restoration") else "red" if line.startswith("new") else ""
        )
        console.print(f"    [{style}]{escape(line)}[/]" if style else f"    {escape(line)}")


async def decide(
    event: ProposalEvent, wiring: Wiring, approvals: Approvals, console: Console
) -> dict[str, Any]:
    """Show one proposal's values, decide on it under ``approvals``, and run it if approved.

    Returns the record for the ``--json`` output (its state and what happened).
    """
    record: dict[str, Any] = {
        "id": event.proposal_id,
        "action": event.action,
        "target": event.target,
        "command": event.command,
    }
    provenance = await asyncio.to_thread(_provenance, wiring, event.proposal_id)
    render_values(console, provenance)
    record["restores_only"] = provenance.restores_only
    automatic = approvals.automatic and provenance.restores_only
    if automatic:
        console.print(f"  --yes: approving proposal #{event.proposal_id} (restorations only)")
        decision: bool | None = True
    else:
        if approvals.automatic:
            console.print("  --yes approves restorations only: this proposal sets a new value")
        decision = approvals.ask(event, provenance)
    if decision is None:
        return record | {"state": "PENDING", "detail": "waiting for a person to approve it"}
    if not decision:
        await asyncio.to_thread(
            proposal_store.reject, wiring.engine, event.proposal_id, approver=approvals.approver
        )
        console.print(f"  proposal #{event.proposal_id} rejected")
        return record | {"state": "REJECTED"}
    if wiring.executor_api is None:
        console.print("  [red]no executor identity configured (AOI_EXECUTOR_KUBECONFIG)[/]")
        return record | {"state": "PENDING"}
    return record | await _approve_and_run(event, wiring, approvals, automatic, console)


async def _approve_and_run(
    event: ProposalEvent, wiring: Wiring, approvals: Approvals, automatic: bool, console: Console
) -> dict[str, Any]:
    assert wiring.executor_api is not None
    try:
        won = await asyncio.to_thread(
            proposal_store.approve,
            wiring.engine,
            event.proposal_id,
            approver=approvals.approver,
            policy=approvals.policy,
            automatic=automatic,
        )
    except ApprovalRefused as exc:
        console.print(f"  [red]{escape(str(exc))}[/]")
        return {"state": "NOT_APPROVED", "detail": str(exc)}
    if not won:
        return {"state": "NOT_APPROVED", "detail": "already decided or expired"}
    result = await execute(
        wiring.engine,
        event.proposal_id,
        wiring.executor_api,
        policy=approvals.policy,
        rules=approvals.rules,
    )
    console.print(f"  proposal #{event.proposal_id}: {result.state} — {escape(result.message)}")
    return {"state": str(result.state), "detail": result.message, "verified": result.verified}
