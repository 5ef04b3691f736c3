"""Writing an investigation to the store as it happens, and reading guidance back.

Every step is committed the moment it is taken, so an investigation that is
interrupted (a crash, a cancelled Slack thread) leaves a consistent trajectory:
the steps so far plus an incident marked FAILED with the reason. The trainer
and the Evolver read exactly these rows, so this is also where redaction guards
the store: the question, each decision, tool call and observation, and the
diagnosis are redacted here, whatever the caller did before.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from agents.redact import redact, redact_json
from store.db import session_scope
from store.models import Guidance, Incident, IncidentStatus, Step, StepPhase

_WORD = re.compile(r"[a-z][a-z0-9-]{2,}")
_STOP = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "are",
        "was",
        "not",
        "but",
        "has",
        "have",
        "its",
        "into",
        "when",
        "why",
        "what",
        "all",
    }
)


@dataclass(frozen=True)
class IncidentContext:
    """Where the question came from (Slack thread, console, benchmark)."""

    question: str
    requester: str = "console"
    cluster: str = ""
    team_id: str = ""
    channel_id: str = ""
    thread_ts: str = ""
    scenario_id: str | None = None
    ground_truth: dict[str, Any] | None = None


class Trajectory:
    """One incident's rows; every method is a short transaction run off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.incident_id = 0
        self.steps = 0

    async def open(self, ctx: IncidentContext) -> int:
        self.incident_id = await asyncio.to_thread(self._open, ctx)
        return self.incident_id

    def _open(self, ctx: IncidentContext) -> int:
        with session_scope(self.engine) as session:
            incident = Incident(
                team_id=ctx.team_id,
                channel_id=ctx.channel_id,
                thread_ts=ctx.thread_ts,
                requester=ctx.requester,
                question=redact(ctx.question),
                cluster=ctx.cluster,
                scenario_id=ctx.scenario_id,
                status=IncidentStatus.INVESTIGATING,
                ground_truth=ctx.ground_truth,
            )
            session.add(incident)
            session.flush()
            assert incident.id is not None
            return incident.id

    async def step(self, phase: StepPhase, **fields: Any) -> int:
        index = self.steps
        self.steps += 1
        await asyncio.to_thread(self._step, index, phase, fields)
        return index

    def _step(self, index: int, phase: StepPhase, fields: dict[str, Any]) -> None:
        # Every field: the decision, tool calls and observation are text, however nested.
        fields = redact_json(fields)
        with session_scope(self.engine) as session:
            session.add(Step(incident_id=self.incident_id, step_index=index, phase=phase, **fields))

    async def close(self, status: IncidentStatus, diagnosis: dict[str, Any] | None) -> None:
        await asyncio.to_thread(self._close, status, diagnosis)

    def _close(self, status: IncidentStatus, diagnosis: dict[str, Any] | None) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if diagnosis is not None:
            values["diagnosis"] = redact_json(diagnosis)
        if status in (IncidentStatus.FAILED, IncidentStatus.CLOSED):
            values["closed_at"] = now
        with session_scope(self.engine) as session:
            session.execute(
                sa.update(Incident).where(col(Incident.id) == self.incident_id).values(**values)
            )


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def retrieve_guidance(engine: Engine, text: str, *, limit: int = 3) -> list[str]:
    """Active Evolver guidance whose symptom shares the most words with ``text``."""
    wanted = _words(text)
    if not wanted:
        return []
    with session_scope(engine) as session:
        rows = list(session.exec(select(Guidance).where(Guidance.active == True)))  # noqa: E712
        scored = sorted(((len(wanted & _words(g.symptom)), g) for g in rows), key=lambda x: -x[0])
        chosen = [g for score, g in scored[:limit] if score >= 2]
        for g in chosen:
            g.usage_count += 1
            session.add(g)
        return [g.guidance for g in chosen]
