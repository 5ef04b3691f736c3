"""The terminal front end: live rendering of an investigation and approval prompts.

It consumes the same event stream as the Slack bot. Approving here is the same
atomic store transition a Slack click makes, and execution goes through the
executor identity; ``--yes`` approves for you but the executor's denylist, the
expiry and the stale-target checks still hold.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
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
from agents.executor import execute
from agents.llm import ChatModel
from agents.runtime import Limits, investigate
from agents.trajectory import IncidentContext
from aoi.wiring import Wiring
from store import proposals as proposal_store


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


Approver = Callable[[ProposalEvent], bool]


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
    approve: Approver,
    console: Console,
) -> Outcome:
    """Investigate, render each event, and ask for approval of each proposal."""
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
            outcome.proposals.append(await _decide(event, wiring, approve, console))
    return outcome


async def _decide(
    event: ProposalEvent, wiring: Wiring, approve: Approver, console: Console
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": event.proposal_id,
        "action": event.action,
        "target": event.target,
        "command": event.command,
    }
    if not approve(event):
        await asyncio.to_thread(
            proposal_store.reject, wiring.engine, event.proposal_id, approver=_whoami()
        )
        console.print(f"  proposal #{event.proposal_id} rejected")
        return record | {"state": "REJECTED"}
    if wiring.executor_api is None:
        console.print("  [red]no executor identity configured (AOI_EXECUTOR_KUBECONFIG)[/]")
        return record | {"state": "PENDING"}
    won = await asyncio.to_thread(
        proposal_store.approve, wiring.engine, event.proposal_id, approver=_whoami()
    )
    if not won:
        return record | {"state": "NOT_APPROVED", "detail": "already decided or expired"}
    result = await execute(wiring.engine, event.proposal_id, wiring.executor_api)
    console.print(f"  proposal #{event.proposal_id}: {result.state} — {result.message}")
    return record | {
        "state": str(result.state),
        "detail": result.message,
        "verified": result.verified,
    }


def _whoami() -> str:
    try:
        return f"console:{getpass.getuser()}"
    except (KeyError, OSError):
        return "console"
